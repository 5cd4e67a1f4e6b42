using System.CommandLine;
using System.Text.Json;
using Meteora.Benchmarking;
using Meteora.IO;
using Meteora.Llama;
using Meteora.Runtime;
using Spectre.Console;

namespace Meteora.Cli.Commands;

/// <summary>
/// <c>bench model</c>: prefill and decode throughput of a model with random weights (a preset such as
/// llama3-8b, or any config.json), median of repeated runs after warm-up, as a table and optional JSON.
/// </summary>
public static class BenchCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var bench = new Command("bench", "Measure speed (see docs/BENCHMARKS.md)");
        bench.Subcommands.Add(CreateModel(context));
        return bench;
    }

    private static Command CreateModel(Func<ParseResult, CliContext> context)
    {
        var config = new Option<string?>("--config") { Description = "preset (llama3-8b, small) or a model folder; default llama3-8b on CUDA, small on CPU" };
        var batch = new Option<int[]>("--batch") { Description = "batch sizes", DefaultValueFactory = _ => [1], AllowMultipleArgumentsPerToken = true };
        var promptLen = new Option<int>("--prompt-len") { Description = "prompt tokens per row", DefaultValueFactory = _ => 512 };
        var newTokens = new Option<int>("--new-tokens") { Description = "decode steps", DefaultValueFactory = _ => 128 };
        var runs = new Option<int>("--runs") { Description = "timed runs (median reported)", DefaultValueFactory = _ => 10 };
        var warmup = new Option<int>("--warmup") { Description = "untimed runs first", DefaultValueFactory = _ => 2 };
        var json = new Option<string?>("--json") { Description = "also write the results to this JSON file" };
        var cmd = new Command("model", "Prefill and decode tokens/s of a model with random weights")
            { config, batch, promptLen, newTokens, runs, warmup, json };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var device = ctx.Device;
            var dtype = ctx.DType;
            string configName = p.GetValue(config) ?? (device.type == TorchSharp.DeviceType.CUDA ? "llama3-8b" : "small");
            var cfg = LlamaPresets.Resolve(configName);
            int P = p.GetValue(promptLen), N = p.GetValue(newTokens), R = p.GetValue(runs), W = p.GetValue(warmup);
            var batches = p.GetValue(batch)!;
            if (P < 1 || N < 1 || R < 1 || W < 0 || batches.Length == 0 || batches.Any(b => b < 1))
                throw new MeteoraException("bench model: --prompt-len, --new-tokens, --runs and --batch must be ≥ 1, --warmup ≥ 0");

            ctx.Err.WriteLine($"bench model: {configName} ({cfg.NumHiddenLayers} layers, hidden {cfg.HiddenSize}), {TorchRuntime.Name(dtype)} on {device}, random weights");
            using var lm = new LlamaForCausalLM(cfg, dtype, device);
            lm.InitializeRandom(seed: 0);
            var results = new List<ModelBenchResult>();
            foreach (int b in batches)
            {
                ctx.Err.WriteLine($"  batch {b}: prefill {P} tokens, decode {N} tokens, {W} warm-up + {R} runs …");
                results.Add(ModelBenchmark.Run(lm, "base", b, P, N, W, R));
            }

            var table = new Table().AddColumns("variant", "batch", "prompt", "prefill tok/s", "prefill ms", "new", "decode tok/s", "ms/step");
            foreach (var r in results)
                table.AddRow(r.Variant, r.Batch.ToString(), r.PromptLength.ToString(), $"{r.PrefillTokensPerSecond:F0}",
                    $"{r.PrefillSeconds * 1e3:F2}", r.NewTokens.ToString(), $"{r.DecodeTokensPerSecond:F1}", $"{r.DecodeSeconds * 1e3 / r.NewTokens:F2}");
            Render(ctx.Out, table);

            if (p.GetValue(json) is { } jsonPath)
                AtomicFile.WriteAllText(jsonPath, JsonSerializer.Serialize(new
                {
                    config = configName, device = device.ToString(), dtype = TorchRuntime.Name(dtype), runs = R, warmup = W,
                    results = results.Select(r => new
                    {
                        variant = r.Variant, batch = r.Batch, prompt_len = r.PromptLength, new_tokens = r.NewTokens,
                        prefill_s = r.PrefillSeconds, decode_s = r.DecodeSeconds,
                        prefill_tok_s = r.PrefillTokensPerSecond, decode_tok_s = r.DecodeTokensPerSecond,
                    }),
                }, new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        });
        return cmd;
    }

    /// <summary>Plain-text table (no colours), so it reads the same in a log file.</summary>
    internal static void Render(TextWriter output, Table table)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors, Out = new AnsiConsoleOutput(output),
        });
        console.Profile.Width = 160;
        console.Write(table);
    }
}
