using System.Text.Json;
using Meteora.Serving;

namespace Meteora.Tests.Server;

/// <summary>A server wide enough for 64 concurrent streams on the tiny fixture.</summary>
public sealed class WideServer : IAsyncLifetime
{
    public TinyServer Inner { get; } = new() { EngineOptions = new EngineOptions { MaxBatch = 32, MaxQueue = 64, MaxContext = 96, PrefillChunk = 16 } };
    public Task InitializeAsync() => Inner.InitializeAsync();
    public Task DisposeAsync() => Inner.DisposeAsync();
}

public class LoadTests(WideServer fixture) : IClassFixture<WideServer>
{
    private sealed record Client(int Index, string Model, int? TopK, string Prompt, int MaxTokens, bool Cancel);

    /// <summary>
    /// 64 concurrent streaming clients on loopback (more than the 32 rows: some wait), mixing meteora top-1/top-2,
    /// forced adapters and base, 10 % of them closing the connection mid-stream. Every other stream ends with a
    /// finish reason and [DONE], its text equals the same request made alone, the token counts add up to
    /// /metrics, and afterwards no row is held.
    /// </summary>
    [Fact(Timeout = 240_000)]
    public async Task SixtyFourConcurrentStreamsMatchTheirSoloRunsAndLeaveNothingHeld()
    {
        var server = fixture.Inner;
        string[] models = ["meteora", "meteora", "reverse", "add", "upper", "base"];
        var clients = Enumerable.Range(0, 64).Select(i => new Client(i, models[i % models.Length],
            models[i % models.Length] == "meteora" ? 1 + i % 2 : null, $"case {i}: " + new string((char)('a' + i % 26), 1 + i % 7),
            8 + i % 9, i % 10 == 3)).ToList();
        double generatedBefore = Metric(await server.Http.GetStringAsync("/metrics"), "meteora_generation_tokens_total");

        var runs = clients.Select(c => Task.Run(() => RunStream(server, c))).ToList();
        var results = await Task.WhenAll(runs);

        int completedTokens = 0;
        foreach (var (client, result) in clients.Zip(results))
        {
            if (client.Cancel) { Assert.Null(result.Done); continue; }
            Assert.True(result.Done, $"client {client.Index} ({client.Model}) stream did not end with [DONE]");
            Assert.Equal("length", result.FinishReason);                   // greedy, no stop strings: runs to max_tokens or EOS
            Assert.Equal(client.MaxTokens, result.Usage);
            completedTokens += result.Usage!.Value;
        }
        // A cancelled stream's row is freed on the engine's next step after the server notices the closed connection.
        await TinyServer.WaitUntil(() => server.Engine.Running == 0 && server.Engine.Waiting == 0, TimeSpan.FromSeconds(30));
        Assert.Equal(0, server.Engine.Running);
        Assert.Equal(0, server.Engine.Waiting);

        // Tokens: at least every completed stream's usage, at most that plus what the cancelled ones could have made.
        double generated = Metric(await server.Http.GetStringAsync("/metrics"), "meteora_generation_tokens_total") - generatedBefore;
        int cancelledMax = clients.Where(c => c.Cancel).Sum(c => c.MaxTokens);
        Assert.InRange(generated, completedTokens, completedTokens + cancelledMax);

        // Every completed stream's text equals the same request alone (greedy).
        foreach (var (client, result) in clients.Zip(results).Where(x => !x.First.Cancel).Take(24))
        {
            var (status, body, _) = await server.Post("/v1/completions", Body(client, stream: false));
            Assert.Equal(200, status);
            Assert.Equal(body.GetProperty("choices")[0].GetProperty("text").GetString(), result.Text);
        }
    }

    private static object Body(Client c, bool stream) => c.TopK is { } k
        ? new { model = c.Model, prompt = c.Prompt, max_tokens = c.MaxTokens, temperature = 0, stream, meteora = new { top_k = k } }
        : (object)new { model = c.Model, prompt = c.Prompt, max_tokens = c.MaxTokens, temperature = 0, stream };

    private sealed record StreamResult(string Text, string? FinishReason, int? Usage, bool? Done);

    private static async Task<StreamResult> RunStream(TinyServer server, Client c)
    {
        using var cancel = new CancellationTokenSource();
        var body = c.TopK is { } k
            ? new { model = c.Model, prompt = c.Prompt, max_tokens = c.MaxTokens, temperature = 0, stream = true, stream_options = new { include_usage = true }, meteora = new { top_k = k } }
            : (object)new { model = c.Model, prompt = c.Prompt, max_tokens = c.MaxTokens, temperature = 0, stream = true, stream_options = new { include_usage = true } };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = System.Net.Http.Json.JsonContent.Create(body) };
        var text = new System.Text.StringBuilder();
        string? reason = null; int? usage = null; int chunks = 0;
        try
        {
            using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
            Assert.Equal(200, (int)response.StatusCode);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel.Token));
            while (await reader.ReadLineAsync(cancel.Token) is { } line)
            {
                if (!line.StartsWith("data: ")) continue;
                string data = line[6..];
                if (data == "[DONE]") return new StreamResult(text.ToString(), reason, usage, true);
                var chunk = JsonDocument.Parse(data).RootElement;
                if (chunk.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object) usage = u.GetProperty("completion_tokens").GetInt32();
                foreach (var choice in chunk.GetProperty("choices").EnumerateArray())
                {
                    text.Append(choice.GetProperty("text").GetString());
                    if (choice.GetProperty("finish_reason").GetString() is { } r) reason = r;
                }
                if (c.Cancel && ++chunks == 2) cancel.Cancel();                 // close mid-stream
            }
            return new StreamResult(text.ToString(), reason, usage, false);
        }
        catch (OperationCanceledException) when (c.Cancel)
        {
            return new StreamResult(text.ToString(), reason, usage, null);
        }
    }

    private static double Metric(string text, string name) =>
        text.Split('\n').Where(l => l.StartsWith(name + " ")).Select(l => double.Parse(l[(name.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture)).Sum();
}
