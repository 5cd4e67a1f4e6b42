using System.CommandLine;
using System.Text.Json;
using Meteora.Benchmarking;
using Meteora.IO;
using Meteora.Llama;
using Meteora.Runtime;
using Meteora.Server;
using Meteora.Server.Benchmarking;
using Meteora.Serving;
using Meteora.Tokenization;
using Spectre.Console;

namespace Meteora.Cli.Commands;

/// <summary>
/// <c>bench serve</c>: the serving benchmark. Serves a MeteoRA model with random weights (a preset such as
/// llama3-8b, L random rank-r adapters, random gates) on loopback, or targets a running server (<c>--url</c>),
/// and drives it over HTTP with 1, 8, 32, 64 … concurrent streams; in-process it also times <c>bench model</c>'s
/// prefill and batched decode of the same model in the same run, for the ratios the serving targets name.
/// </summary>
public static class BenchServeCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var config = new Option<string?>("--config") { Description = "preset (llama3-8b, small) or a model folder; default llama3-8b on CUDA, small on CPU" };
        var adapters = new Option<int>("--adapters") { Description = "random rank-r adapters on all 7 projections", DefaultValueFactory = _ => 28 };
        var rank = new Option<int>("--rank") { Description = "adapter rank", DefaultValueFactory = _ => 8 };
        var topK = new Option<int>("--top-k") { Description = "adapters per token (request field meteora.top_k)", DefaultValueFactory = _ => 2 };
        var concurrency = new Option<string>("--concurrency") { Description = "concurrent streams per level", DefaultValueFactory = _ => "1,8,32,64" };
        var promptLen = new Option<int>("--prompt-len") { Description = "prompt tokens per request (random ids)", DefaultValueFactory = _ => 512 };
        var newTokens = new Option<int>("--new-tokens") { Description = "tokens per request (ignore_eos)", DefaultValueFactory = _ => 128 };
        var prefillChunk = new Option<int>("--prefill-chunk") { Description = "engine prefill chunk (in-process)", DefaultValueFactory = _ => 512 };
        var url = new Option<string?>("--url") { Description = "a running server instead of the in-process one (needs --vocab)" };
        var vocab = new Option<int?>("--vocab") { Description = "with --url: the model's vocabulary size (prompt ids are drawn below it)" };
        var model = new Option<string>("--model") { Description = "model name in the requests", DefaultValueFactory = _ => "meteora" };
        var reference = new Option<bool>("--no-reference") { Description = "skip the bench model prefill/decode reference (in-process)" };
        var json = new Option<string?>("--json") { Description = "also write the results to this JSON file" };
        var graphs = new Option<bool>("--cuda-graphs") { Description = "in-process server: replay decode steps from CUDA graphs (--cuda-graphs false: eager steps)", DefaultValueFactory = _ => true };
        var cmd = new Command("serve", "Serving latency and throughput over the HTTP API at several concurrency levels")
            { config, adapters, rank, topK, concurrency, promptLen, newTokens, prefillChunk, url, vocab, model, reference, json, graphs };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            int P = p.GetValue(promptLen), N = p.GetValue(newTokens), L = p.GetValue(adapters), r = p.GetValue(rank), k = p.GetValue(topK);
            var levels = p.GetValue(concurrency)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(v => int.TryParse(v, out int c) && c is > 0 and <= 4096 ? c : throw new MeteoraException($"--concurrency: '{v}' is not an integer in 1…4096")).ToArray();
            if (levels.Length == 0 || P < 1 || N < 1 || L < 1 || r < 1 || k < 1 || k > L)
                throw new MeteoraException("bench serve: --prompt-len, --new-tokens, --adapters, --rank ≥ 1, 1 ≤ --top-k ≤ --adapters, and at least one --concurrency");
            string modelName = p.GetValue(model)!;
            int? modelTopK = modelName == ServingModel.MeteoraName ? k : null;
            var results = new List<ServeLoadResult>();
            var referenceResults = new List<ModelBenchResult>();
            string target;
            if (p.GetValue(url) is { } address)
            {
                int v = p.GetValue(vocab) ?? throw new MeteoraException("bench serve --url: give --vocab (the served model's vocabulary size)");
                target = address;
                using var http = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromMinutes(30) };
                RunLevels(ctx, new ServeLoadGenerator(http, modelName, v, modelTopK), levels, P, N, results);
            }
            else
            {
                var device = ctx.Device; var dtype = ctx.DType;
                string configName = p.GetValue(config) ?? (device.type == TorchSharp.DeviceType.CUDA ? "llama3-8b" : "small");
                var cfg = LlamaPresets.Resolve(configName);
                target = $"{configName} in-process";
                ctx.Err.WriteLine($"bench serve: {configName} ({cfg.NumHiddenLayers} layers, hidden {cfg.HiddenSize}), {L} adapters r={r}, top-{k}, {TorchRuntime.Name(dtype)} on {device}, random weights");
                string tokenizerDir = Path.Combine(Path.GetTempPath(), "meteora-bench-serve-" + Guid.NewGuid().ToString("N")[..8]);
                WordLevelTokenizerWriter.Write(tokenizerDir, cfg.VocabSize);
                var m = SyntheticMeteora.Build(cfg, L, r, device, dtype);
                m.Configure(topK: k);
                using var tokenizerCleanup = new FolderCleanup(tokenizerDir);
                var tokenizer = HfTokenizer.Load(tokenizerDir);
                using var served = new ServingModel(m.Model, m, tokenizer, $"random {configName}", "gates");
                if (!p.GetValue(reference))
                {
                    // bench model's numbers for the same model, same run: prefill of one prompt, batched decode.
                    referenceResults.Add(ModelBenchmark.Prefill(m.Model, $"meteora top{k}", 1, P, 2, 5));
                    int decodeBatch = levels.Contains(32) ? 32 : levels.Max();
                    referenceResults.Add(ModelBenchmark.Decode(m.Model, $"meteora top{k}", decodeBatch, P, Math.Min(N, 64), 2, perStep: true));
                    if (device.type == TorchSharp.DeviceType.CUDA && CudaGraph.Available)
                        referenceResults.Add(ModelBenchmark.Decode(m.Model, $"meteora top{k}", decodeBatch, P, Math.Min(N, 64), 2, perStep: true, graph: true));
                    foreach (var x in referenceResults)
                        ctx.Err.WriteLine($"  bench model {x.Phase,-12} batch {x.Batch,3}: {x.TokensPerSecond,10:F1} tok/s ({x.Seconds * 1e3:F2} ms)");
                }
                var engineOptions = new EngineOptions { MaxBatch = levels.Max(), MaxQueue = levels.Max(), MaxContext = Math.Min(cfg.MaxPositionEmbeddings, P + N + 8), PrefillChunk = p.GetValue(prefillChunk), CudaGraphs = p.GetValue(graphs) };
                using var engine = new ServingEngine(served, engineOptions);
                var server = new MeteoraServer(engine, new ServerOptions { Port = 0, Log = false });
                try
                {
                    server.StartAsync().GetAwaiter().GetResult();
                    using var http = new HttpClient { BaseAddress = new Uri(server.Address), Timeout = TimeSpan.FromMinutes(30) };
                    while (!engine.WarmedUp) Thread.Sleep(20);
                    if (engine.WarmupError is { } failed) throw new MeteoraException($"bench serve: the engine's warm-up failed: {failed}");
                    var generator = new ServeLoadGenerator(http, modelName, cfg.VocabSize, modelTopK);
                    generator.RunAsync(1, Math.Min(P, 16), 4, seed: 99).GetAwaiter().GetResult();   // warm-up, untimed
                    RunLevels(ctx, generator, levels, P, N, results);
                }
                finally
                {
                    server.StopAsync().GetAwaiter().GetResult();
                    server.DisposeAsync().AsTask().GetAwaiter().GetResult();
                }
            }
            Report(ctx, results, referenceResults, P, N);
            if (p.GetValue(json) is { } jsonPath)
                AtomicFile.WriteAllText(jsonPath, JsonSerializer.Serialize(new
                {
                    target, prompt_len = P, new_tokens = N, adapters = L, rank = r, top_k = k, model = modelName,
                    levels = results, reference = referenceResults.Select(x => new { phase = x.Phase, batch = x.Batch, seconds = x.Seconds, tokens_per_s = x.TokensPerSecond }),
                }, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
            return 0;
        });
        return cmd;
    }

    private static void RunLevels(CliContext ctx, ServeLoadGenerator generator, int[] levels, int P, int N, List<ServeLoadResult> results)
    {
        foreach (int c in levels)
        {
            var x = generator.RunAsync(c, P, N, seed: c).GetAwaiter().GetResult();
            results.Add(x);
            ctx.Err.WriteLine($"  {c,3} streams: {x.Throughput,9:F1} tok/s overall, {x.DecodeThroughput,9:F1} decode, TTFT p50 {x.TtftP50 * 1e3:F1} ms, TPOT p50 {x.TpotP50 * 1e3:F2} / p99 {x.TpotP99 * 1e3:F2} ms");
            ctx.Err.Flush();
        }
    }

    private static void Report(CliContext ctx, List<ServeLoadResult> results, List<ModelBenchResult> reference, int P, int N)
    {
        var table = new Table().AddColumns("streams", "tokens", "wall s", "tok/s", "decode tok/s", "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms", "TPOT p99 ms", "ITL p50 ms", "ITL p99 ms");
        foreach (var x in results)
            table.AddRow(x.Concurrency.ToString(), x.CompletionTokens.ToString(), $"{x.WallSeconds:F2}", $"{x.Throughput:F1}", $"{x.DecodeThroughput:F1}",
                $"{x.TtftP50 * 1e3:F1}", $"{x.TtftP99 * 1e3:F1}", $"{x.TpotP50 * 1e3:F2}", $"{x.TpotP99 * 1e3:F2}", $"{x.ItlP50 * 1e3:F2}", $"{x.ItlP99 * 1e3:F2}");
        BenchCommand.Render(ctx.Out, table);
        if (reference.Count == 0) return;
        var prefill = reference.First(x => x.Phase == "prefill");
        foreach (var decode in reference.Where(x => x.Phase != "prefill"))
            if (results.FirstOrDefault(x => x.Concurrency == decode.Batch) is { } at)
                ctx.Out.WriteLine($"decode at {decode.Batch} streams / bench model {decode.Phase} batch {decode.Batch}: {at.DecodeThroughput / decode.TokensPerSecond:F2} (target ≥ 0.85)");
        if (results.FirstOrDefault(x => x.Concurrency == 32) is { } r32)
            ctx.Out.WriteLine($"TPOT p99 / p50 at 32 streams: {r32.TpotP99 / r32.TpotP50:F2} (target ≤ 1.5)");
        if (results.FirstOrDefault(x => x.Concurrency == 1) is { } r1)
            ctx.Out.WriteLine($"TTFT at 1 stream / bench model prefill of {P} tokens: {r1.TtftP50 / prefill.Seconds:F2} (target ≤ 1.2)");
    }

    /// <summary>Deletes a temporary folder on dispose.</summary>
    private sealed class FolderCleanup(string path) : IDisposable
    {
        public void Dispose()
        {
            try { Directory.Delete(path, true); } catch (IOException) { }
        }
    }
}
