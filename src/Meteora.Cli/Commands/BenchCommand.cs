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
        bench.Subcommands.Add(CreateTrainGate(context));
        return bench;
    }

    private static Command CreateTrainGate(Func<ParseResult, CliContext> context)
    {
        var config = new Option<string?>("--config") { Description = "preset (llama3-8b, small) or a model folder's config; default llama3-8b on CUDA, small on CPU" };
        var adapters = new Option<int>("--adapters") { Description = "random rank-r adapters on all 7 projections", DefaultValueFactory = _ => 28 };
        var rank = new Option<int>("--rank") { Description = "adapter rank", DefaultValueFactory = _ => 8 };
        var seqLen = new Option<int>("--seq-len") { Description = "tokens per sequence", DefaultValueFactory = _ => 512 };
        var batch = new Option<int>("--batch-size") { Description = "sequences per step", DefaultValueFactory = _ => 1 };
        var steps = new Option<int>("--steps") { Description = "optimiser steps", DefaultValueFactory = _ => 50 };
        var warmup = new Option<int>("--warmup") { Description = "steps excluded from the throughput", DefaultValueFactory = _ => 5 };
        var json = new Option<string?>("--json") { Description = "also write the result to this JSON file" };
        var cmd = new Command("train-gate", "Gate-training throughput and device memory on a synthetic MeteoRA model")
            { config, adapters, rank, seqLen, batch, steps, warmup, json };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var device = ctx.Device;
            string name = p.GetValue(config) ?? (device.type == TorchSharp.DeviceType.CUDA ? "llama3-8b" : "small");
            var cfg = LlamaPresets.Resolve(name);
            int n = p.GetValue(adapters), r = p.GetValue(rank), T = p.GetValue(seqLen), B = p.GetValue(batch), S = p.GetValue(steps), W = p.GetValue(warmup);
            if (n < 1 || r < 1 || T < 2 || B < 1 || S < 2 || W < 0 || W >= S - 1)
                throw new MeteoraException("bench train-gate: --adapters, --rank, --batch-size ≥ 1, --seq-len ≥ 2, --steps ≥ 2 and 0 ≤ --warmup < --steps - 1");
            ctx.Err.WriteLine($"bench train-gate: {name} with {n} rank-{r} adapters, {TorchRuntime.Name(ctx.DType)} on {device}, {B} × {T} tokens per step, {S} steps ({W} warm-up)");
            var result = GateTrainingBenchmark.Run(cfg, n, r, T, B, S, W, device, ctx.DType, ctx.Err.WriteLine);
            var table = new Table().AddColumns("config", "adapters", "tokens/step", "s/step", "tokens/s", "peak device memory", "before model");
            table.AddRow(name, $"{n} × r{r}", result.TokensPerStep.ToString(), $"{result.SecondsPerStep:F3}", $"{result.TokensPerSecond:F0}",
                result.PeakDeviceBytes is { } pk ? $"{pk / (double)(1L << 30):F2} GiB" : "n/a", result.BaselineDeviceBytes is { } b0 ? $"{b0 / (double)(1L << 30):F2} GiB" : "n/a");
            Render(ctx.Out, table);
            if (p.GetValue(json) is { } jsonPath)
                AtomicFile.WriteAllText(jsonPath, JsonSerializer.Serialize(new
                {
                    config = name, device = device.ToString(), dtype = TorchRuntime.Name(ctx.DType), adapters = n, rank = r, seq_len = T, batch = B,
                    steps = S, warmup = W, seconds_per_step = result.SecondsPerStep, tokens_per_s = result.TokensPerSecond,
                    peak_device_bytes = result.PeakDeviceBytes, baseline_device_bytes = result.BaselineDeviceBytes,
                }, new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        });
        return cmd;
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
