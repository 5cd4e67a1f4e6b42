using System.CommandLine;
using Meteora.IO;
using Meteora.Llama;
using static TorchSharp.torch;

namespace Meteora.Cli.Commands;

/// <summary><c>forward --model DIR [--adapter DIR] --ids 1,2,3 --out F</c>: writes float32 <c>logits</c> (T, V) to a safetensors file.</summary>
public static class ForwardCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var model = new ModelOptions();
        var ids = new Option<string>("--ids") { Description = "comma-separated token ids, e.g. 0,270,27", Required = true };
        var output = new Option<string>("--out") { Description = "output safetensors file (tensor 'logits', float32, (T, V))", Required = true };
        var cmd = new Command("forward", "Run one forward pass and write the logits") { ids, output };
        model.AddTo(cmd);
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var tokens = TokenIdList.Parse(p.GetValue(ids)!);
            string outPath = p.GetValue(output)!;
            using var lm = model.Load(p, ctx);
            TokenIdList.CheckRange(tokens, lm.Config.VocabSize);
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            var input = tensor(tokens.Select(t => (long)t).ToArray(), [1, tokens.Length], device: ctx.Device);
            var logits = lm.forward(input)[0].to(ScalarType.Float32);      // (T, V)
            SafeTensorsWriter.Write(outPath, [new("logits", logits)]);
            ctx.Err.WriteLine($"wrote logits ({tokens.Length}, {lm.Config.VocabSize}) to {outPath}");
            return 0;
        });
        return cmd;
    }
}
