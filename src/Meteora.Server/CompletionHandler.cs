using System.Text.Json.Nodes;
using System.Threading.Channels;
using Meteora.Server.OpenAi;
using Meteora.Serving;
using Microsoft.AspNetCore.Http;

namespace Meteora.Server;

/// <summary>
/// Runs one completions or chat request against the engine: one engine sequence per choice (prompt × n, seed
/// + choice for seeded sampling), answered whole or streamed as server-sent events (<c>data: {chunk}</c> lines,
/// then <c>data: [DONE]</c>). A client that goes away cancels its sequences, which frees their rows.
/// </summary>
public sealed class CompletionHandler(ServingEngine engine, ServerMetrics metrics)
{
    /// <summary>Plain UTF-8 in the JSON (the bodies are never embedded in HTML).</summary>
    private static readonly System.Text.Json.JsonSerializerOptions Json = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public async Task HandleAsync(HttpContext http, GenerationRequest request)
    {
        string id = (request.Chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N")[..24];
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted);
        var sequences = Submit(request, id, cancel);
        try
        {
            var json = new ResponseJson(request, id, created, engine.Model, engine.RoutingGroups);
            if (request.Stream) await StreamAsync(http, request, sequences, json, cancel.Token);
            else await WholeAsync(http, sequences, json, cancel.Token);
        }
        finally
        {
            cancel.Cancel();   // frees the rows of anything still running (client gone, or an error here)
        }
    }

    /// <summary>Queues every choice; if one is refused, the ones already queued are cancelled.</summary>
    private List<(ChoiceResult Choice, EngineRequest Sequence)> Submit(GenerationRequest request, string id, CancellationTokenSource cancel)
    {
        var sequences = new List<(ChoiceResult, EngineRequest)>();
        long total = (long)request.Prompts.Count * request.N, capacity = (long)engine.Options.MaxQueue + engine.Options.MaxBatch;
        if (total > capacity)
            throw ApiException.BadRequest($"{total} sequences (prompts × n) exceed what this server can hold at once ({capacity})", "n", "invalid_value");
        try
        {
            for (int p = 0; p < request.Prompts.Count; p++)
                for (int j = 0; j < request.N; j++)
                {
                    int index = p * request.N + j;
                    var sampling = request.Sampling.Seed is { } seed ? request.Sampling with { Seed = seed + j } : request.Sampling;
                    var choice = new ChoiceResult(index, p);
                    if (request.Echo) choice.TextBuilder.Append(request.PromptTexts[p]);
                    sequences.Add((choice, engine.Submit($"{id}-{index}", request.Prompts[p], sampling, request.Route, cancel.Token)));
                }
            return sequences;
        }
        catch (Exception e) when (e is ServingRequestException or EngineBusyException)
        {
            cancel.Cancel();
            throw e switch
            {
                ServingRequestException s => ApiException.BadRequest(s.Message, s.Param, s.Code),
                EngineBusyException { Stopping: true } => new ApiException(503, e.Message, null, "shutting_down"),
                _ => new ApiException(429, e.Message, null, "queue_full"),
            };
        }
    }

    private async Task WholeAsync(HttpContext http, List<(ChoiceResult Choice, EngineRequest Sequence)> sequences, ResponseJson json, CancellationToken cancel)
    {
        await Task.WhenAll(sequences.Select(s => CollectAsync(s.Choice, s.Sequence, cancel)));
        if (sequences.FirstOrDefault(s => s.Choice.Finish?.Error is not null) is { Choice: { } failed })
            throw new ApiException(500, failed.Finish!.Error!, null, "engine_error");
        if (sequences.Any(s => s.Choice.Finish is null || s.Choice.Finish.Reason == "abort")) return;   // the client left
        await WriteJsonAsync(http, 200, json.Whole(sequences.Select(s => s.Choice).ToList()));
    }

    private async Task CollectAsync(ChoiceResult choice, EngineRequest sequence, CancellationToken cancel)
    {
        var clock = new TokenClock(sequence.Arrival, metrics);
        try
        {
            await foreach (var e in sequence.Events.ReadAllAsync(CancellationToken.None))
            {
                if (e is TokenEvent t) { clock.Token(); choice.Tokens.Add(t); choice.TextBuilder.Append(t.Text); }
                else if (e is FinishEvent f) { clock.Finished(f); choice.Finish = f; choice.TextBuilder.Append(f.Text); }
            }
        }
        catch (ChannelClosedException) { }
    }

    private async Task StreamAsync(HttpContext http, GenerationRequest request, List<(ChoiceResult Choice, EngineRequest Sequence)> sequences,
        ResponseJson json, CancellationToken cancel)
    {
        http.Response.StatusCode = 200;
        http.Response.ContentType = "text/event-stream; charset=utf-8";
        http.Response.Headers.CacheControl = "no-cache";
        http.Response.Headers["X-Accel-Buffering"] = "no";
        // Every choice's events, merged in the order they come.
        var merged = Channel.CreateUnbounded<(int Choice, EngineEvent Event)>();
        var pumps = sequences.Select((s, i) => Task.Run(async () =>
        {
            await foreach (var e in s.Sequence.Events.ReadAllAsync(CancellationToken.None)) await merged.Writer.WriteAsync((i, e));
        })).ToArray();
        _ = Task.WhenAll(pumps).ContinueWith(_ => merged.Writer.TryComplete(), TaskScheduler.Default);
        var clocks = sequences.Select(s => new TokenClock(s.Sequence.Arrival, metrics)).ToArray();
        var started = new bool[sequences.Count];
        try
        {
            await foreach (var (i, e) in merged.Reader.ReadAllAsync(cancel))
            {
                var choice = sequences[i].Choice;
                string prefix = started[i] ? "" : choice.Text;   // echo: the prompt goes out with the first chunk
                bool first = !started[i];
                started[i] = true;
                if (e is TokenEvent t)
                {
                    clocks[i].Token();
                    choice.Tokens.Add(t);
                    if (t.Text.Length == 0 && prefix.Length == 0 && !first && !request.Logprobs && !request.Route.ReturnRouting) continue;
                    await WriteEventAsync(http, json.Chunk(choice.Index, prefix + t.Text, [t], null, first), cancel);
                }
                else if (e is FinishEvent f)
                {
                    clocks[i].Finished(f);
                    choice.Finish = f;
                    if (f.Error is not null)
                    {
                        // The stream has started: the error goes out as an event, then the stream closes.
                        await WriteEventAsync(http, new ApiException(500, f.Error, null, "engine_error").ToJson(), cancel);
                        return;
                    }
                    if (f.Reason == "abort") return;
                    await WriteEventAsync(http, json.Chunk(choice.Index, prefix + f.Text, [], f.Reason, first), cancel);
                }
            }
            if (request.IncludeUsage) await WriteEventAsync(http, json.UsageChunk(sequences.Select(s => s.Choice).ToList()), cancel);
            await http.Response.WriteAsync("data: [DONE]\n\n", cancel);
            await http.Response.Body.FlushAsync(cancel);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException) { }   // the client went away: HandleAsync's finally frees the rows
    }

    private static async Task WriteEventAsync(HttpContext http, JsonObject payload, CancellationToken cancel)
    {
        await http.Response.WriteAsync("data: " + payload.ToJsonString(Json) + "\n\n", cancel);
        await http.Response.Body.FlushAsync(cancel);
    }

    public static async Task WriteJsonAsync(HttpContext http, int status, JsonNode body)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json";
        await http.Response.WriteAsync(body.ToJsonString(Json));
    }

    /// <summary>Times one sequence's tokens for the latency metrics.</summary>
    private sealed class TokenClock(DateTime arrival, ServerMetrics metrics)
    {
        private DateTime? _last;

        public void Token()
        {
            var now = DateTime.UtcNow;
            if (_last is { } last) metrics.NextToken(now - last); else metrics.FirstToken(now - arrival);
            _last = now;
        }

        public void Finished(FinishEvent f) => metrics.Finished(f, DateTime.UtcNow - arrival);
    }
}
