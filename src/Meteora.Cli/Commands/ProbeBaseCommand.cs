using System.CommandLine;
using System.Text.Json;
using Meteora.IO;
using Meteora.Llama;
using Meteora.Tokenization;
using Meteora.Training;

namespace Meteora.Cli.Commands;

/// <summary>
/// <c>probe-base --model DIR [--context N] [--out F]</c>: runs the base-model probes (copying, composite-style
/// restatement after 0/1/2 solved blocks, loss by position) on any base folder and prints them; <c>--out</c> writes
/// them as JSON (the format of make-base's probes.json). For judging a base before training adapters on it.
/// </summary>
public static class ProbeBaseCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var model = new Option<string>("--model") { Description = "base model folder", Required = true };
        var ctxLen = new Option<int?>("--context") { Description = "context length probed (default: the smaller of max_position_embeddings and 2048)" };
        var output = new Option<string?>("--out") { Description = "write the probes as JSON to this file" };
        var cmd = new Command("probe-base", "Probe a base model: copying, composite-style restatement, loss by position") { model, ctxLen, output };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            string folder = p.GetValue(model)!;
            using var lm = LlamaLoader.Load(folder, ctx.Device, ctx.DType);
            using var tokenizer = HfTokenizer.Load(folder);
            int n = p.GetValue(ctxLen) ?? Math.Min(lm.Config.MaxPositionEmbeddings, 2048);
            if (n < 16 || n > lm.Config.MaxPositionEmbeddings)
                throw new MeteoraException($"--context: {n} must be between 16 and the model's {lm.Config.MaxPositionEmbeddings} positions");
            var r = BaseProbes.Run(lm, tokenizer, n);
            ctx.Out.WriteLine(r.ToString());
            if (p.GetValue(output) is { } path)
                AtomicFile.WriteAllText(path, JsonSerializer.Serialize(r.ToJson(n, double.NaN), new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        });
        return cmd;
    }
}
