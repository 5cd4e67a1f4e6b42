using System.CommandLine;
using System.Text.Json;
using Meteora.Benchmarking;
using Meteora.IO;
using Meteora.Llama;
using Meteora.Runtime;
using Meteora.Moe;
using Meteora.Lora;
using Spectre.Console;
using static TorchSharp.torch;

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
        bench.Subcommands.Add(CreatePhases(context));
        bench.Subcommands.Add(CreateTrainGate(context));
        bench.Subcommands.Add(CreateTrainLora(context));
        bench.Subcommands.Add(CreateLayer(context));
        bench.Subcommands.Add(CreateRouting(context));
        bench.Subcommands.Add(BenchServeCommand.Create(context));
        bench.Subcommands.Add(BenchAllReduceCommand.Create(context));
        return bench;
    }

    /// <summary>The --config given, else the 8B shapes on CUDA and the small preset on the CPU.</summary>
    private static string ConfigName(string? given, TorchSharp.torch.Device device) =>
        given ?? (device.type == TorchSharp.DeviceType.CUDA ? "llama3-8b" : "small");

    private static int[] Ints(string s, string option) =>
        s.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(v => int.TryParse(v, out int i) && i > 0 ? i : throw new MeteoraException($"{option}: '{v}' is not a positive integer")).ToArray();

    private static Command CreateLayer(Func<ParseResult, CliContext> context)
    {
        var shapes = new Option<string?>("--shapes") { Description = "in×out list, e.g. 4096x4096,4096x1024 (default: LLaMA-3-8B's four on CUDA, small on CPU)" };
        var adapters = new Option<string?>("--adapters") { Description = "adapter counts L (default 8,28,64,256 on CUDA)" };
        var ranks = new Option<string>("--ranks") { Description = "ranks r", DefaultValueFactory = _ => "8,16" };
        var topK = new Option<string>("--top-k") { Description = "k values", DefaultValueFactory = _ => "1,2" };
        var tokens = new Option<string?>("--tokens") { Description = "token counts N (default 1,16,256,4096 on CUDA)" };
        var runs = new Option<int>("--runs") { Description = "timed runs (median reported)", DefaultValueFactory = _ => 10 };
        var warmup = new Option<int>("--warmup") { Description = "untimed runs first", DefaultValueFactory = _ => 3 };
        var json = new Option<string?>("--json") { Description = "also write every row to this JSON file" };
        var cmd = new Command("layer", "Time one MeteoRA projection with every strategy and the bare projection")
            { shapes, adapters, ranks, topK, tokens, runs, warmup, json };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            bool cuda = ctx.Device.type == TorchSharp.DeviceType.CUDA;
            var shapeList = (p.GetValue(shapes) ?? (cuda ? "4096x4096,4096x1024,4096x14336,14336x4096" : "256x256,256x704"))
                .Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(s =>
                {
                    var parts = s.Split('x');
                    return parts.Length == 2 && int.TryParse(parts[0], out int i) && int.TryParse(parts[1], out int o) && i > 0 && o > 0
                        ? (i, o) : throw new MeteoraException($"--shapes: '{s}' is not in×out");
                }).ToList();
            var ls = Ints(p.GetValue(adapters) ?? (cuda ? "8,28,64,256" : "8,28"), "--adapters");
            var rs = Ints(p.GetValue(ranks)!, "--ranks");
            var ks = Ints(p.GetValue(topK)!, "--top-k");
            var ns = Ints(p.GetValue(tokens) ?? (cuda ? "1,16,256,4096" : "1,16,256"), "--tokens");
            int R = p.GetValue(runs), W = p.GetValue(warmup);
            if (R < 1 || W < 0) throw new MeteoraException("bench layer: --runs ≥ 1 and --warmup ≥ 0");
            bool pool = CudaRuntime.PoolAllocatorRequested;
            ctx.Err.WriteLine($"bench layer: {TorchRuntime.Name(ctx.DType)} on {ctx.Device}; timing {(cuda ? "CUDA events" : "stopwatch")}, median of {R} after {W} warm-up; " +
                (cuda ? pool ? "memory from the cudaMallocAsync pool" : "no memory figures (set PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync)" : "no memory figures on CPU"));
            ctx.Err.WriteLine($"  dense routing: {RoutingKernel.Describe(ctx.Device)}; decode sizes: {SelectiveMixKernel.Describe(ctx.Device)}");
            var rows = LayerBenchmark.Run(shapeList, ls, rs, ks, ns, ctx.Device, ctx.DType, W, R, ctx.Err.WriteLine).ToList();

            var table = new Table().AddColumns(["in→out", "L", "r", "k", "N", .. LayerBenchmark.Variants.Select(v => v + " ms"), "dense/base", "gather/dense", "extra MB gather", "extra MB dense"]);
            foreach (var g in rows.GroupBy(r => (r.In, r.Out, r.Adapters, r.Rank, r.TopK, r.Tokens)))
            {
                var by = g.ToDictionary(r => r.Variant);
                string Mb(string v) => by[v].ExtraBytes is { } b ? $"{b / 1048576.0:F1}" : "n/a";
                table.AddRow([$"{g.Key.In}→{g.Key.Out}", g.Key.Adapters.ToString(), g.Key.Rank.ToString(), g.Key.TopK.ToString(), g.Key.Tokens.ToString(),
                    .. LayerBenchmark.Variants.Select(v => $"{by[v].Milliseconds:F3}"),
                    $"{by["dense"].Milliseconds / by["base"].Milliseconds:F2}", $"{by["gather"].Milliseconds / by["dense"].Milliseconds:F1}", Mb("gather"), Mb("dense")]);
            }
            Render(ctx.Out, table);
            foreach (var v in LayerBenchmark.Variants.Where(v => v is not ("base" or "loop")))
                ctx.Out.WriteLine($"max relative error vs loop, {v}: {rows.Where(r => r.Variant == v).Max(r => r.RelErrorVsLoop ?? 0):G3}");
            if (p.GetValue(json) is { } jsonPath)
                AtomicFile.WriteAllText(jsonPath, JsonSerializer.Serialize(new
                {
                    device = ctx.Device.ToString(), dtype = TorchRuntime.Name(ctx.DType), runs = R, warmup = W,
                    rows = rows.Select(r => new { r.In, r.Out, r.Adapters, r.Rank, r.TopK, r.Tokens, r.Variant, ms = r.Milliseconds, extra_bytes = r.ExtraBytes, rel_error_vs_loop = r.RelErrorVsLoop }),
                }, new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        });
        return cmd;
    }

    private static Command CreateTrainGate(Func<ParseResult, CliContext> context) => CreateTraining(context, lora: false);

    private static Command CreateTrainLora(Func<ParseResult, CliContext> context) => CreateTraining(context, lora: true);

    /// <summary>
    /// <c>bench train-gate</c> (MeteoRA gates over N random adapters) and <c>bench train-lora</c> (one random adapter
    /// on every projection): training throughput and device memory on a model with random weights; data-parallel
    /// under torchrun (<c>--batch-size</c> sequences per rank).
    /// </summary>
    private static Command CreateTraining(Func<ParseResult, CliContext> context, bool lora)
    {
        string what = lora ? "train-lora" : "train-gate";
        var config = new Option<string?>("--config") { Description = "preset (llama3-8b, small) or a model folder's config; default llama3-8b on CUDA, small on CPU" };
        var adapters = new Option<int>("--adapters") { Description = "random rank-r adapters on all 7 projections", DefaultValueFactory = _ => 28 };
        var rank = new Option<int>("--rank") { Description = "adapter rank", DefaultValueFactory = _ => 8 };
        var seqLen = new Option<int>("--seq-len") { Description = "tokens per sequence", DefaultValueFactory = _ => 512 };
        var batch = new Option<int>("--batch-size") { Description = "sequences per step (per GPU under torchrun)", DefaultValueFactory = _ => 1 };
        var steps = new Option<int>("--steps") { Description = "optimiser steps", DefaultValueFactory = _ => 50 };
        var warmup = new Option<int>("--warmup") { Description = "steps excluded from the throughput", DefaultValueFactory = _ => 5 };
        var json = new Option<string?>("--json") { Description = "also write the result to this JSON file" };
        var cudaGraph = TrainingCliOptions.CudaGraphOption();
        var phases = new Option<bool>("--phases") { Description = "then run the steps again, synchronised at every phase boundary (forward, backward, gradients, optimizer), and report where a step's time goes" };
        var cmd = lora
            ? new Command(what, "LoRA-training throughput and device memory: one random rank-r adapter on every projection of a model with random weights") { config, rank, seqLen, batch, steps, warmup, json, phases }
            : new Command(what, "Gate-training throughput and device memory on a synthetic MeteoRA model") { config, adapters, rank, seqLen, batch, steps, warmup, json, phases, cudaGraph };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var device = ctx.Device;
            string name = ConfigName(p.GetValue(config), device);
            var cfg = LlamaPresets.Resolve(name);
            int n = lora ? 1 : p.GetValue(adapters), r = p.GetValue(rank), T = p.GetValue(seqLen), B = p.GetValue(batch), S = p.GetValue(steps), W = p.GetValue(warmup);
            if (n < 1 || r < 1 || T < 2 || B < 1 || S < 2 || W < 0 || W >= S - 1)
                throw new MeteoraException($"bench {what}: --adapters, --rank, --batch-size ≥ 1, --seq-len ≥ 2, --steps ≥ 2 and 0 ≤ --warmup < --steps - 1");
            // Under torchrun with several ranks: data-parallel over NCCL, --batch-size sequences per rank.
            using var ranks = DistributedLaunch.Join(ctx, Path.Combine(Path.GetTempPath(), "meteora-bench-rendezvous"));
            int world = ranks?.WorldSize ?? 1;
            bool lead = ranks is not { Rank: > 0 };
            if (lead)
                ctx.Err.WriteLine($"bench {what}: {name} with {n} rank-{r} adapter(s), {TorchRuntime.Name(ctx.DType)} on {device}, {B} × {T} tokens per step" +
                    (world > 1 ? $" on each of {world} ranks" : "") + $", {S} steps ({W} warm-up)");
            Action<string>? log = lead ? ctx.Err.WriteLine : null;
            bool timePhases = p.GetValue(phases);
            bool? graphs = lora ? false : TrainingCliOptions.CudaGraphs(p.GetValue(cudaGraph)!);   // LoRA training's loss reads back: never graphed
            var result = lora ? LoraTrainingBenchmark.Run(cfg, r, T, B, S, W, device, ctx.DType, log, ranks, timePhases, graphs)
                : GateTrainingBenchmark.Run(cfg, n, r, T, B, S, W, device, ctx.DType, log, ranks, timePhases, graphs);
            if (!lead) return 0;   // rank 0 reports
            var table = new Table().AddColumns("config", "adapters", "GPUs", "tokens/step", "s/step", "tokens/s", "tokens/s per GPU", "peak device memory", "before model");
            table.AddRow(name, $"{n} × r{r}", world.ToString(), result.TokensPerStep.ToString(), $"{result.SecondsPerStep:F3}", $"{result.TokensPerSecond:F0}", $"{result.TokensPerSecond / world:F0}",
                result.PeakDeviceBytes is { } pk ? $"{pk / (double)(1L << 30):F2} GiB" : "n/a", result.BaselineDeviceBytes is { } b0 ? $"{b0 / (double)(1L << 30):F2} GiB" : "n/a");
            Render(ctx.Out, table);
            if (result.Phases is { } stepPhases)
            {
                // Issued ≈ done: the host bounds the phase; done ≫ issued: the device does.
                var pt = new Table().AddColumns("phase (synchronised run)", "issued, ms/step", "done, ms/step");
                foreach (var ph in stepPhases) pt.AddRow(ph.Name, $"{ph.IssuedSeconds * 1e3:F1}", $"{ph.DoneSeconds * 1e3:F1}");
                pt.AddRow("step", $"{stepPhases.Sum(x => x.IssuedSeconds) * 1e3:F1}", $"{stepPhases.Sum(x => x.DoneSeconds) * 1e3:F1}");
                Render(ctx.Out, pt);
            }
            if (p.GetValue(json) is { } jsonPath)
                AtomicFile.WriteAllText(jsonPath, JsonSerializer.Serialize(new
                {
                    bench = what, config = name, device = device.ToString(), dtype = TorchRuntime.Name(ctx.DType), adapters = n, rank = r, seq_len = T, batch = B, world,
                    steps = S, warmup = W, seconds_per_step = result.SecondsPerStep, tokens_per_s = result.TokensPerSecond,
                    peak_device_bytes = result.PeakDeviceBytes, baseline_device_bytes = result.BaselineDeviceBytes,
                    phases = result.Phases?.Select(x => new { name = x.Name, issued_s = x.IssuedSeconds, done_s = x.DoneSeconds }),
                    cuda_graph = lora ? "off" : p.GetValue(cudaGraph), losses = result.Losses,
                }, new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        });
        return cmd;
    }

    private static Command CreateModel(Func<ParseResult, CliContext> context)
    {
        var config = new Option<string?>("--config") { Description = "preset (llama3-8b, small) or a model folder; default llama3-8b on CUDA, small on CPU" };
        var batch = new Option<int[]>("--batch") { Description = "batch sizes (prefill batch × --prompt-len, and decode)", DefaultValueFactory = _ => [1], AllowMultipleArgumentsPerToken = true };
        var promptLen = new Option<int>("--prompt-len") { Description = "prompt tokens per row", DefaultValueFactory = _ => 512 };
        var prefill = new Option<string?>("--prefill") { Description = "prefill shapes B×T, e.g. 1x2048,8x512 (overrides --batch/--prompt-len for prefill)" };
        var decode = new Option<string?>("--decode") { Description = "decode batch sizes, e.g. 1,8,32 (after a --prompt-len prefill; overrides --batch for decode)" };
        var newTokens = new Option<int>("--new-tokens") { Description = "timed decode steps (median step reported)", DefaultValueFactory = _ => 128 };
        var variants = new Option<string>("--variants") { Description = "base, lora (one rank-r adapter), top1, top2 (MeteoRA)", DefaultValueFactory = _ => "base" };
        var strategies = new Option<string>("--strategies") { Description = "MeteoRA strategies: auto, dense, segment, gather, loop", DefaultValueFactory = _ => "auto" };
        var adapters = new Option<int>("--adapters") { Description = "MeteoRA adapters (random rank-r, all 7 projections)", DefaultValueFactory = _ => 28 };
        var rank = new Option<int>("--rank") { Description = "adapter rank", DefaultValueFactory = _ => 8 };
        var runs = new Option<int>("--runs") { Description = "timed runs (median reported)", DefaultValueFactory = _ => 10 };
        var warmup = new Option<int>("--warmup") { Description = "untimed runs first", DefaultValueFactory = _ => 2 };
        var json = new Option<string?>("--json") { Description = "also write the results to this JSON file" };
        var decodeTiming = new Option<string>("--decode-timing") { Description = "step: median of individually synchronised steps; loop: total time of the steps run back to back", DefaultValueFactory = _ => "step" };
        decodeTiming.AcceptOnlyFromAmong("step", "loop");
        var decodeMode = new Option<string?>("--decode-mode") { Description = "eager (forward per step, as generate runs), graph (a CUDA graph replayed per step) or both, e.g. eager,graph; default graph on CUDA, eager on CPU" };
        var cmd = new Command("model", "Prefill and decode tokens/s (and peak memory) of a model with random weights: base, one adapter, MeteoRA")
            { config, batch, promptLen, prefill, decode, newTokens, variants, strategies, adapters, rank, runs, warmup, json, decodeTiming, decodeMode };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var device = ctx.Device;
            var dtype = ctx.DType;
            string configName = ConfigName(p.GetValue(config), device);
            var cfg = LlamaPresets.Resolve(configName);
            int P = p.GetValue(promptLen), N = p.GetValue(newTokens), R = p.GetValue(runs), W = p.GetValue(warmup);
            int L = p.GetValue(adapters), r = p.GetValue(rank);
            bool perStep = p.GetValue(decodeTiming) == "step";
            var batches = p.GetValue(batch)!;
            if (P < 1 || N < 1 || R < 1 || W < 0 || L < 1 || r < 1 || batches.Length == 0 || batches.Any(b => b < 1))
                throw new MeteoraException("bench model: --prompt-len, --new-tokens, --runs, --adapters, --rank and --batch must be ≥ 1, --warmup ≥ 0");
            var prefillShapes = p.GetValue(prefill) is { } ps
                ? ps.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(x =>
                {
                    var bt = x.Split('x');
                    return bt.Length == 2 && int.TryParse(bt[0], out int b) && int.TryParse(bt[1], out int t) && b > 0 && t > 0 ? (b, t)
                        : throw new MeteoraException($"--prefill: '{x}' is not B×T");
                }).ToList()
                : batches.Select(b => (b, P)).ToList();
            var decodeBatches = p.GetValue(decode) is { } ds ? Ints(ds, "--decode") : batches;
            var decodeModes = (p.GetValue(decodeMode) ?? (device.type == TorchSharp.DeviceType.CUDA ? "graph" : "eager"))
                .Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            if (decodeModes.Length == 0 || decodeModes.Any(m => m is not ("eager" or "graph")))
                throw new MeteoraException($"--decode-mode: '{p.GetValue(decodeMode)}' is not a list of eager and graph");
            if (decodeModes.Contains("graph") && device.type != TorchSharp.DeviceType.CUDA)
                throw new MeteoraException("--decode-mode graph: CUDA graphs need --device cuda");
            if (decodeModes.Contains("graph") && !CudaGraph.Available)
                throw new MeteoraException("--decode-mode graph: this libtorch does not export at::cuda::CUDAGraph");
            var variantNames = p.GetValue(variants)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            var strategyNames = p.GetValue(strategies)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            foreach (var v in variantNames)
                if (v is not ("base" or "lora" or "top1" or "top2")) throw new MeteoraException($"--variants: unknown variant '{v}' (base, lora, top1, top2)");
            var strategyList = strategyNames.Select(MixingStrategies.Parse).ToList();

            ctx.Err.WriteLine($"bench model: {configName} ({cfg.NumHiddenLayers} layers, hidden {cfg.HiddenSize}), {TorchRuntime.Name(dtype)} on {device}, random weights; " +
                (CudaRuntime.PoolAllocatorRequested ? "memory from the cudaMallocAsync pool" : "no memory figures"));
            if (variantNames.Any(v => v.StartsWith("top"))) ctx.Err.WriteLine($"  dense routing: {RoutingKernel.Describe(device)}; decode sizes: {SelectiveMixKernel.Describe(device)}");
            if (dtype == ScalarType.BFloat16) ctx.Err.WriteLine($"  norms, rotary, SiLU·up: {Meteora.Llama.FusedKernels.Describe(device)}; decode attention: {Meteora.Llama.DecodeAttention.Describe(device)}");
            var results = new List<ModelBenchResult>();
            void Report(ModelBenchResult x)
            {
                results.Add(x);
                // One line per measurement as it lands, so a long run that is cut short keeps what it measured.
                ctx.Err.WriteLine($"  {x.Variant,-24} {x.Phase,-12} batch {x.Batch,3} × {(x.Phase == "prefill" ? x.PromptLength : x.NewTokens),5}: {x.TokensPerSecond,10:F1} tok/s" +
                    (x.PeakBytes is { } pk ? $", peak {pk / (double)(1L << 30):F2} GiB" : ""));
                ctx.Err.Flush();
            }
            void Measure(LlamaForCausalLM lm, string name, bool slow)
            {
                // loop, gather and segment synchronise or copy per projection: fewer steps keep the run bounded.
                int stepsHere = slow ? Math.Min(N, 12) : N;
                foreach (var (b, t) in prefillShapes) Report(ModelBenchmark.Prefill(lm, name, b, t, W, slow ? Math.Min(R, 10) : R));
                foreach (int b in decodeBatches)
                foreach (var mode in decodeModes)
                    Report(ModelBenchmark.Decode(lm, name, b, P, stepsHere, W, perStep, graph: mode == "graph"));
            }

            if (variantNames.Contains("base"))
            {
                using var lm = new LlamaForCausalLM(cfg, dtype, device);
                lm.InitializeRandom(seed: 0);
                Measure(lm, "base", false);
            }
            if (variantNames.Contains("lora"))
            {
                var adapter = SyntheticAdapters.Create(cfg, 1, r, ProjectionSite.AllNames, seed: 1)[0];
                using var lm = new LlamaForCausalLM(cfg, dtype, device, LoraModel.Factory(adapter.Config, adapter.Targets, dtype, dtype, device));
                lm.InitializeRandom(seed: 0);
                LoraModel.CopyWeights(lm, adapter);
                adapter.Dispose();
                Measure(lm, "lora", false);
            }
            var topKs = variantNames.Where(v => v.StartsWith("top")).Select(v => int.Parse(v[3..])).ToList();
            if (topKs.Count > 0)
            {
                using var m = SyntheticMeteora.Build(cfg, L, r, device, dtype);
                foreach (int k in topKs)
                foreach (var s in strategyList)
                {
                    m.Configure(topK: Math.Min(k, L), strategy: s);
                    Measure(m.Model, $"meteora top{k} {s.ToString().ToLowerInvariant()}", s is MixingStrategy.Loop or MixingStrategy.Gather or MixingStrategy.Segment);
                }
            }

            var table = new Table().AddColumns("variant", "phase", "batch", "tokens", "tok/s", "ms", "ms/step", "peak GiB");
            foreach (var x in results)
                table.AddRow(x.Variant, x.Phase, x.Batch.ToString(), (x.Phase == "prefill" ? x.PromptLength : x.NewTokens).ToString(),
                    $"{x.TokensPerSecond:F1}", $"{x.Seconds * 1e3:F2}", x.Phase != "prefill" ? $"{x.Seconds * 1e3 / x.NewTokens:F2}" : "",
                    x.PeakBytes is { } pk ? $"{pk / (double)(1L << 30):F2}" : "n/a");
            Render(ctx.Out, table);
            if (variantNames.Any(v => v.StartsWith("top")) && device.type == TorchSharp.DeviceType.CUDA)
                ctx.Err.WriteLine($"  grouped one-token decode (q/k/v, gate/up): {(MeteoraLinear.GroupedDecode ? "on" : "off")}, " +
                    $"{MeteoraLinear.GroupedCalls} grouped calls (a CUDA graph counts once, at capture)");

            if (p.GetValue(json) is { } jsonPath)
                AtomicFile.WriteAllText(jsonPath, JsonSerializer.Serialize(new
                {
                    config = configName, device = device.ToString(), dtype = TorchRuntime.Name(dtype), runs = R, warmup = W, adapters = L, rank = r,
                    results = results.Select(x => new
                    {
                        variant = x.Variant, phase = x.Phase, batch = x.Batch, prompt_len = x.PromptLength, new_tokens = x.NewTokens,
                        seconds = x.Seconds, tokens_per_s = x.TokensPerSecond, peak_bytes = x.PeakBytes,
                    }),
                }, new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        });
        return cmd;
    }

    private static Command CreatePhases(Func<ParseResult, CliContext> context)
    {
        var config = new Option<string?>("--config") { Description = "preset (llama3-8b, small) or a model folder", DefaultValueFactory = _ => "llama3-8b" };
        var variant = new Option<string>("--variant") { Description = "base, or MeteoRA top1 / top2 (random rank-r adapters on all 7 projections, default strategy)", DefaultValueFactory = _ => "base" };
        variant.AcceptOnlyFromAmong("base", "top1", "top2");
        var prefill = new Option<string>("--prefill") { Description = "prefill shapes B×T, e.g. 1x512,8x512 (empty: none)", DefaultValueFactory = _ => "1x512" };
        var decode = new Option<string>("--decode") { Description = "decode batch sizes after a --prompt-len prefill, e.g. 1,8 (empty: none)", DefaultValueFactory = _ => "1" };
        var promptLen = new Option<int>("--prompt-len") { Description = "prompt tokens before the decode step", DefaultValueFactory = _ => 512 };
        var adapters = new Option<int>("--adapters") { Description = "MeteoRA adapters", DefaultValueFactory = _ => 28 };
        var rank = new Option<int>("--rank") { Description = "adapter rank", DefaultValueFactory = _ => 8 };
        var runs = new Option<int>("--runs") { Description = "timed passes (median per phase)", DefaultValueFactory = _ => 20 };
        var warmup = new Option<int>("--warmup") { Description = "untimed passes first", DefaultValueFactory = _ => 3 };
        var json = new Option<string?>("--json") { Description = "also write the breakdowns to this JSON file" };
        var cmd = new Command("phases", "Where the GPU time of a prefill and a decode step goes, phase by phase (CUDA events at the model's phase boundaries; decode replayed as a CUDA graph)")
            { config, variant, prefill, decode, promptLen, adapters, rank, runs, warmup, json };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var device = ctx.Device;
            var dtype = ctx.DType;
            int P = p.GetValue(promptLen), R = p.GetValue(runs), W = p.GetValue(warmup), L = p.GetValue(adapters), r = p.GetValue(rank);
            if (P < 1 || R < 1 || W < 0 || L < 1 || r < 1)
                throw new MeteoraException("bench phases: --prompt-len, --runs, --adapters and --rank must be ≥ 1, --warmup ≥ 0");
            if (device.type != TorchSharp.DeviceType.CUDA || !PhaseMarks.Available || !CudaGraph.Available)
                throw new MeteoraException("bench phases: needs --device cuda (CUDA events and graphs)");
            var prefillShapes = p.GetValue(prefill)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(x =>
            {
                var bt = x.Split('x');
                return bt.Length == 2 && int.TryParse(bt[0], out int b) && int.TryParse(bt[1], out int t) && b > 0 && t > 0 ? (b, t)
                    : throw new MeteoraException($"--prefill: '{x}' is not B×T");
            }).ToList();
            var decodeBatches = string.IsNullOrWhiteSpace(p.GetValue(decode)) ? [] : Ints(p.GetValue(decode)!, "--decode");
            string configName = p.GetValue(config)!;
            var cfg = LlamaPresets.Resolve(configName);
            string name = p.GetValue(variant)!;
            ctx.Err.WriteLine($"bench phases: {configName} ({cfg.NumHiddenLayers} layers, hidden {cfg.HiddenSize}), {name}, {TorchRuntime.Name(dtype)} on {device}; " +
                $"norms, rotary, SiLU·up: {FusedKernels.Describe(device)}; decode attention: {DecodeAttention.Describe(device)}" + (name == "base" ? "" : $"; dense routing: {RoutingKernel.Describe(device)}; decode sizes: {SelectiveMixKernel.Describe(device)}"));
            var results = new List<PhaseBreakdown>();
            void Run(LlamaForCausalLM lm)
            {
                foreach (var (b, t) in prefillShapes) results.Add(PhaseBenchmark.Prefill(lm, b, t, W, R));
                foreach (int b in decodeBatches) results.Add(PhaseBenchmark.Decode(lm, b, P, W, R));
            }
            if (name == "base")
            {
                using var lm = new LlamaForCausalLM(cfg, dtype, device);
                lm.InitializeRandom(seed: 0);
                Run(lm);
            }
            else
            {
                using var m = SyntheticMeteora.Build(cfg, L, r, device, dtype);
                m.Configure(topK: Math.Min(int.Parse(name[3..]), L), strategy: MixingStrategy.Auto);
                Run(m.Model);
            }
            foreach (var x in results)
            {
                ctx.Out.WriteLine($"{name} {x.Pass} batch {x.Batch} × {(x.Pass == "prefill" ? x.Tokens : 1)}: {x.MarkedMs:F3} ms with marks, {x.UnmarkedMs:F3} ms without");
                var table = new Table().AddColumns("phase", "per pass", "ms", "share");
                foreach (var ph in x.Phases.OrderByDescending(ph => ph.Ms))
                    table.AddRow(ph.Phase, ph.PerPass.ToString(), $"{ph.Ms:F3}", $"{100 * ph.Ms / x.MarkedMs:F1} %");
                Render(ctx.Out, table);
            }
            if (p.GetValue(json) is { } jsonPath)
                AtomicFile.WriteAllText(jsonPath, JsonSerializer.Serialize(new
                {
                    config = configName, variant = name, device = device.ToString(), dtype = TorchRuntime.Name(dtype), runs = R, warmup = W,
                    fused_kernels = FusedKernels.Describe(device), decode_attention = DecodeAttention.Describe(device),
                    results = results.Select(x => new
                    {
                        pass = x.Pass, batch = x.Batch, tokens = x.Tokens, marked_ms = x.MarkedMs, unmarked_ms = x.UnmarkedMs,
                        phases = x.Phases.Select(ph => new { phase = ph.Phase, per_pass = ph.PerPass, ms = ph.Ms }),
                    }),
                }, new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        });
        return cmd;
    }

    private static Command CreateRouting(Func<ParseResult, CliContext> context)
    {
        var model = new Option<string?>("--model") { Description = "base Hugging Face model folder (with --meteora; default: a model with random weights)" };
        var meteora = new Option<string?>("--meteora") { Description = "MeteoRA checkpoint folder (with --model)" };
        var config = new Option<string?>("--config") { Description = "random model: preset (small, llama3-8b) or a config.json (default: llama3-8b on CUDA, small on CPU)" };
        var adapters = new Option<int>("--adapters") { Description = "random model: adapters L", DefaultValueFactory = _ => 28 };
        var rank = new Option<int>("--rank") { Description = "random model: LoRA rank r", DefaultValueFactory = _ => 8 };
        var topK = new Option<int>("--top-k") { Description = "adapters per token", DefaultValueFactory = _ => 2 };
        var tokens = new Option<int>("--tokens") { Description = "tokens of the random prompt (one row)", DefaultValueFactory = _ => 512 };
        var seed = new Option<int>("--seed") { Description = "seed of the random prompt", DefaultValueFactory = _ => 0 };
        var json = new Option<string?>("--json") { Description = "also write the rows to this JSON file" };
        var cmd = new Command("routing", "bfloat16/float16 routing against float32: top-k agreement per (projection, token), exact ranking off and on, and the routing kernel's logits against the ATen path's")
            { model, meteora, config, adapters, rank, topK, tokens, seed, json };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var (device, dtype) = (ctx.Device, ctx.DType);
            if (dtype is not (ScalarType.BFloat16 or ScalarType.Float16))
                throw new MeteoraException($"bench routing: --dtype {TorchRuntime.Name(dtype)}: compares a bfloat16 or float16 model with float32; give --dtype bfloat16 or float16");
            string? baseFolder = p.GetValue(model), checkpoint = p.GetValue(meteora);
            if ((baseFolder is null) != (checkpoint is null)) throw new MeteoraException("bench routing: give --model and --meteora together (or neither, for random weights)");
            int k = p.GetValue(topK), T = p.GetValue(tokens), L = p.GetValue(adapters), r = p.GetValue(rank);
            if (k < 1 || T < 1 || L < 1 || r < 1) throw new MeteoraException("bench routing: --top-k, --tokens, --adapters and --rank must be ≥ 1");
            LlamaConfig cfg;
            Func<ScalarType, MeteoraModel> build;
            if (baseFolder is not null)
            {
                cfg = LlamaConfig.Load(baseFolder);
                build = d => MeteoraModel.Load(baseFolder, checkpoint!, device, d);
            }
            else
            {
                cfg = LlamaPresets.Resolve(ConfigName(p.GetValue(config), device));
                build = d => SyntheticMeteora.Build(cfg, L, r, device, d);
            }
            using var gen = new Generator((ulong)p.GetValue(seed));
            using var ids = randint(0, cfg.VocabSize, [1, T], generator: gen).to(device);
            ctx.Err.WriteLine($"bench routing: {(baseFolder is null ? $"random {cfg.NumHiddenLayers}-layer model, {L} adapters of rank {r}" : checkpoint)}, top-{k}, " +
                $"{T} tokens, {TorchRuntime.Name(dtype)} against float32 on {device}; unrecorded dense routing: {RoutingKernel.Describe(device)}");
            var rows = RoutingFidelity.Measure(build, ids, k, dtype);
            var table = new Table().AddColumns("variant", "decisions", "same top-k as the float32 model", "same as the float32 gate on the same input", "near a tie (by the bf16 error bound)", "changed by exact ranking", "max |logit − float32|", "max |logit − ATen exact|");
            // "count (share of the decisions)", or "—" where the run could not be recorded.
            static string Of(long? count, long? decisions, string format) =>
                count is { } c && decisions is { } n ? $"{c} ({(100.0 * c / n).ToString(format)} %)" : "—";
            foreach (var x in rows)
                table.AddRow(x.Variant, x.Decisions?.ToString() ?? "—", Of(x.Agreeing, x.Decisions, "F3"), Of(x.SameInputAgreeing, x.Decisions, "F3"),
                    Of(x.NearTies, x.Decisions, "F2"), x.Reranked?.ToString() ?? "—", $"{x.MaxLogitDifference:G4}", x.MaxDifferenceFromAten is { } a ? $"{a:G4}" : "—");
            Render(ctx.Out, table);
            if (p.GetValue(json) is { } path)
                AtomicFile.WriteAllText(path, JsonSerializer.Serialize(new
                {
                    model = baseFolder is null ? $"random {cfg.NumHiddenLayers} layers" : checkpoint, device = device.ToString(), dtype = TorchRuntime.Name(dtype), top_k = k, tokens = T,
                    rows = rows.Select(x => new { variant = x.Variant, decisions = x.Decisions, agreeing = x.Agreeing, reranked = x.Reranked, near_ties = x.NearTies, same_input_agreeing = x.SameInputAgreeing, max_logit_difference = x.MaxLogitDifference, max_difference_from_aten = x.MaxDifferenceFromAten }),
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
