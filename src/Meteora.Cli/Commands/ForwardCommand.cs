using System.CommandLine;
using Meteora.IO;
using System.Text.Json;
using Meteora.Moe;
using static TorchSharp.torch;

namespace Meteora.Cli.Commands;

/// <summary>
/// <c>forward --model DIR [--adapter DIR | --meteora DIR [--top-k K] [--temperature T] [--strategy S]] --ids 1,2,3
/// --out F [--trace J]</c>: writes float32 <c>logits</c> (T, V) to a safetensors file, and with --trace the
/// routing decisions <c>{projection: [[e1..ek] per token]}</c>.
/// </summary>
public static class ForwardCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var model = new ModelOptions();
        var ids = new Option<string>("--ids") { Description = "comma-separated token ids, e.g. 0,270,27", Required = true };
        var output = new Option<string>("--out") { Description = "output safetensors file (tensor 'logits', float32, (T, V))", Required = true };
        var trace = new Option<string?>("--trace") { Description = "with --meteora: write the chosen adapters per token and projection as JSON" };
        var cmd = new Command("forward", "Run one forward pass and write the logits") { ids, output, trace };
        model.AddTo(cmd);
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var tokens = TokenIdList.Parse(p.GetValue(ids)!);
            string outPath = p.GetValue(output)!;
            string? tracePath = p.GetValue(trace);
            using var loaded = model.Load(p, ctx);
            if (tracePath is not null && loaded.Meteora is null) throw new MeteoraException("--trace needs --meteora");
            var lm = loaded.Lm;
            TokenIdList.CheckRange(tokens, lm.Config.VocabSize);
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            using var recorder = new RoutingRecorder { RecordIndices = true };
            loaded.Meteora?.Attach(tracePath is null ? null : recorder);
            var input = tensor(tokens.Select(t => (long)t).ToArray(), [1, tokens.Length], device: ctx.Device);
            var logits = lm.forward(input)[0].to(ScalarType.Float32);      // (T, V)
            SafeTensorsWriter.Write(outPath, [new("logits", logits)]);
            if (tracePath is not null)
                AtomicFile.WriteAllText(tracePath, CliJson.Serialize(recorder.Trace()));
            ctx.Err.WriteLine($"wrote logits ({tokens.Length}, {lm.Config.VocabSize}) to {outPath}" + (tracePath is null ? "" : $" and the routing trace to {tracePath}"));
            return 0;
        });
        return cmd;
    }
}
