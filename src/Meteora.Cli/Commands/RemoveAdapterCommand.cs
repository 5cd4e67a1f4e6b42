using System.CommandLine;
using Meteora.Moe;

namespace Meteora.Cli.Commands;

/// <summary><c>remove-adapter --meteora MDIR --name NAME --out MDIR2</c>: the checkpoint without that adapter (no training).</summary>
public static class RemoveAdapterCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var meteora = new Option<string>("--meteora") { Description = "the MeteoRA checkpoint", Required = true };
        var name = new Option<string>("--name") { Description = "the adapter to remove", Required = true };
        var output = new Option<string>("--out") { Description = "the new checkpoint folder (must not exist, or be empty)", Required = true };
        var cmd = new Command("remove-adapter", "Drop one adapter and its gate rows from a MeteoRA checkpoint (routing renormalises over the rest)")
            { meteora, name, output };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var r = AdapterRemoval.Remove(p.GetValue(meteora)!, p.GetValue(name)!, p.GetValue(output)!);
            ctx.Err.WriteLine($"removed '{r.Removed}' (adapter {r.Index}); {r.AdaptersLeft} adapters left, top-k {r.TopK}" +
                (r.TopKLowered ? " (lowered: the checkpoint's top-k exceeded the adapters left)" : "") + $"; written to {p.GetValue(output)}");
            return 0;
        });
        return cmd;
    }
}
