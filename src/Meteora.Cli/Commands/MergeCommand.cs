using System.CommandLine;
using Meteora.Lora;

namespace Meteora.Cli.Commands;

/// <summary><c>merge --model DIR --adapter DIR --out DIR</c>: writes the base with the adapter folded in.</summary>
public static class MergeCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var model = new Option<string>("--model") { Description = "base Hugging Face model folder", Required = true };
        var adapter = new Option<string>("--adapter") { Description = "PEFT LoRA adapter folder", Required = true };
        var output = new Option<string>("--out") { Description = "output folder (a Hugging Face model folder)", Required = true };
        var cmd = new Command("merge", "Fold a LoRA adapter into its base and write a Hugging Face folder") { model, adapter, output };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            LoraMerger.Merge(p.GetValue(model)!, p.GetValue(adapter)!, p.GetValue(output)!, ctx.Err.WriteLine);
            return 0;
        });
        return cmd;
    }
}
