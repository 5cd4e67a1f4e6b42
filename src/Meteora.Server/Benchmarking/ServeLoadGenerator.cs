using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;

namespace Meteora.Server.Benchmarking;

/// <summary>One load level's measurements (seconds; tokens/s).</summary>
/// <param name="Throughput">All completion tokens over the level's wall time (prefill included).</param>
/// <param name="DecodeThroughput">Sum over streams of each stream's decode rate (tokens after the first / time after the first).</param>
public sealed record ServeLoadResult(int Concurrency, int Requests, int CompletionTokens, double WallSeconds, double Throughput, double DecodeThroughput,
    double TtftP50, double TtftP99, double TpotP50, double TpotP99, double ItlP50, double ItlP99);

/// <summary>
/// The serving benchmark's load generator (<c>meteora bench serve</c>): it speaks the HTTP API like any client.
/// At each concurrency level, that many clients each stream one greedy completion of a random
/// <c>promptLength</c>-token prompt (token ids) for exactly <c>newTokens</c> tokens (<c>ignore_eos</c>), all
/// started together; it times the first token (TTFT), the gaps between streamed chunks (ITL) and each stream's
/// time per output token after the first (TPOT).
/// </summary>
public sealed class ServeLoadGenerator(HttpClient http, string model, int vocabSize, int? topK)
{
    public async Task<ServeLoadResult> RunAsync(int concurrency, int promptLength, int newTokens, int seed, CancellationToken cancel = default)
    {
        var random = new Random(seed);
        var prompts = Enumerable.Range(0, concurrency).Select(_ => Enumerable.Range(0, promptLength).Select(_ => random.Next(vocabSize)).ToArray()).ToList();
        var clock = Stopwatch.StartNew();
        var streams = await Task.WhenAll(prompts.Select(p => Task.Run(() => StreamOne(p, newTokens, clock, cancel))));
        double wall = streams.Max(s => s.End);
        int tokens = streams.Sum(s => s.Tokens);
        var ttft = streams.Select(s => s.FirstToken - s.Start).ToList();
        var tpot = streams.Where(s => s.Tokens > 1).Select(s => (s.End - s.FirstToken) / (s.Tokens - 1)).ToList();
        var itl = streams.SelectMany(s => s.Gaps).ToList();
        double decode = streams.Where(s => s.Tokens > 1 && s.End > s.FirstToken).Sum(s => (s.Tokens - 1) / (s.End - s.FirstToken));
        return new ServeLoadResult(concurrency, streams.Length, tokens, wall, tokens / wall, decode,
            Percentile(ttft, 50), Percentile(ttft, 99), Percentile(tpot, 50), Percentile(tpot, 99), Percentile(itl, 50), Percentile(itl, 99));
    }

    private sealed record StreamTiming(double Start, double FirstToken, double End, int Tokens, List<double> Gaps);

    private async Task<StreamTiming> StreamOne(int[] prompt, int newTokens, Stopwatch clock, CancellationToken cancel)
    {
        object body = topK is { } k
            ? new { model, prompt, max_tokens = newTokens, temperature = 0, ignore_eos = true, stream = true, stream_options = new { include_usage = true }, meteora = new { top_k = k } }
            : new { model, prompt, max_tokens = newTokens, temperature = 0, ignore_eos = true, stream = true, stream_options = new { include_usage = true } };
        double start = clock.Elapsed.TotalSeconds, first = double.NaN, last = double.NaN;
        var gaps = new List<double>();
        int tokens = 0;
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = JsonContent.Create(body) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
        if (!response.IsSuccessStatusCode)
            throw new MeteoraException($"bench serve: the server answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancel)}");
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel));
        while (await reader.ReadLineAsync(cancel) is { } line)
        {
            if (!line.StartsWith("data: ")) continue;
            string data = line[6..];
            if (data == "[DONE]") break;
            using var chunk = JsonDocument.Parse(data);
            if (chunk.RootElement.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object)
            {
                tokens = u.GetProperty("completion_tokens").GetInt32();
                continue;
            }
            if (chunk.RootElement.TryGetProperty("error", out var error)) throw new MeteoraException($"bench serve: stream error: {error}");
            double now = clock.Elapsed.TotalSeconds;
            bool hasText = chunk.RootElement.GetProperty("choices").EnumerateArray().Any(c => c.GetProperty("text").GetString() is { Length: > 0 });
            if (!hasText) continue;
            if (double.IsNaN(first)) first = now; else gaps.Add(now - last);
            last = now;
        }
        return new StreamTiming(start, double.IsNaN(first) ? last : first, last, tokens, gaps);
    }

    /// <summary>The p-th percentile (nearest rank) of <paramref name="values"/>; NaN when empty.</summary>
    public static double Percentile(IReadOnlyList<double> values, double p)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.OrderBy(v => v).ToArray();
        int rank = (int)Math.Ceiling(p / 100 * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }
}
