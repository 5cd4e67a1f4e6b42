using System.CommandLine;
using Meteora.Moe;

namespace Meteora.Cli.Commands;

/// <summary><c>convert --from-original F --model DIR --adapter DIR… --out DIR</c>: original MeteoRA checkpoint → our folder.</summary>
public static class ConvertCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var from = new Option<string>("--from-original") { Description = "model.safetensors of an original (Python) MeteoRA checkpoint", Required = true };
        var model = new Option<string>("--model") { Description = "the base model folder it was built on", Required = true };
        var adapters = new Option<string[]>("--adapter") { Description = "adapter folders, in gate order (repeat the option or list them)", Required = true, AllowMultipleArgumentsPerToken = true };
        var output = new Option<string>("--out") { Description = "new MeteoRA checkpoint folder", Required = true };
        var topK = new Option<int>("--top-k") { Description = "default top-k recorded in the checkpoint", DefaultValueFactory = _ => 2 };
        var temperature = new Option<double>("--temperature") { Description = "default routing temperature recorded in the checkpoint", DefaultValueFactory = _ => 1.0 };
        var cmd = new Command("convert", "Convert an original MeteoRA checkpoint into a MeteoRA for .NET checkpoint folder")
            { from, model, adapters, output, topK, temperature };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            OriginalCheckpointConverter.Convert(p.GetValue(from)!, p.GetValue(model)!, p.GetValue(adapters)!, p.GetValue(output)!,
                p.GetValue(topK), p.GetValue(temperature), ctx.Err.WriteLine);
            return 0;
        });
        return cmd;
    }
}
