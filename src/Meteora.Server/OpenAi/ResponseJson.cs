using System.Text.Json.Nodes;
using Meteora.Serving;

namespace Meteora.Server.OpenAi;

/// <summary>
/// OpenAI's response objects for completions and chat: whole responses, streamed chunks, log-probabilities in
/// each endpoint's own shape, usage, and the <c>meteora_routing</c> extension (per token: the top-k adapters
/// by mean routing weight over all layers and per layer group).
/// </summary>
public sealed class ResponseJson(GenerationRequest request, string id, long created, ServingModel model, IReadOnlyList<(int First, int Last)> groups)
{
    private string Object => request.Chat ? "chat.completion" : "text_completion";
    private string ChunkObject => request.Chat ? "chat.completion.chunk" : "text_completion";

    /// <summary>A whole (non-streamed) response.</summary>
    public JsonObject Whole(IReadOnlyList<ChoiceResult> choices) => new()
    {
        ["id"] = id, ["object"] = Object, ["created"] = created, ["model"] = request.Model, ["system_fingerprint"] = null,
        ["choices"] = new JsonArray(choices.Select(c => (JsonNode)Choice(c.Index, c.Text, c.Tokens, c.Finish?.Reason, whole: true)).ToArray()),
        ["usage"] = Usage(choices),
    };

    /// <summary>One streamed chunk: a choice's text piece and tokens, optionally its finish reason.</summary>
    public JsonObject Chunk(int index, string text, IReadOnlyList<TokenEvent> tokens, string? finishReason, bool first)
    {
        var choice = Choice(index, text, tokens, finishReason, whole: false);
        if (request.Chat && first)
        {
            var delta = (JsonObject)choice["delta"]!;
            delta["role"] = "assistant";
            delta["content"] ??= "";
        }
        var chunk = new JsonObject
        {
            ["id"] = id, ["object"] = ChunkObject, ["created"] = created, ["model"] = request.Model, ["system_fingerprint"] = null,
            ["choices"] = new JsonArray(choice),
        };
        if (request.IncludeUsage) chunk["usage"] = null;
        return chunk;
    }

    /// <summary>The last chunk of a stream with <c>include_usage</c>: no choices, the usage.</summary>
    public JsonObject UsageChunk(IReadOnlyList<ChoiceResult> choices) => new()
    {
        ["id"] = id, ["object"] = ChunkObject, ["created"] = created, ["model"] = request.Model, ["system_fingerprint"] = null,
        ["choices"] = new JsonArray(), ["usage"] = Usage(choices),
    };

    private JsonObject Choice(int index, string text, IReadOnlyList<TokenEvent> tokens, string? finishReason, bool whole)
    {
        var choice = new JsonObject { ["index"] = index };
        if (!request.Chat) choice["text"] = text;
        else if (whole) choice["message"] = new JsonObject { ["role"] = "assistant", ["content"] = text, ["refusal"] = null };
        else choice["delta"] = text.Length > 0 ? new JsonObject { ["content"] = text } : new JsonObject();
        choice["logprobs"] = request.Logprobs && tokens.Count > 0 ? Logprobs(tokens) : null;
        choice["finish_reason"] = finishReason;
        if (request.Route.ReturnRouting) choice["meteora_routing"] = new JsonArray(tokens.Select(t => (JsonNode)Routing(t)).ToArray());
        return choice;
    }

    private JsonObject Logprobs(IReadOnlyList<TokenEvent> tokens)
    {
        if (request.Chat)
            return new JsonObject
            {
                ["content"] = new JsonArray(tokens.Select(t =>
                {
                    var entry = ChatEntry(t.Logprob!);
                    entry["top_logprobs"] = new JsonArray((t.TopLogprobs ?? []).Select(x => (JsonNode)ChatEntry(x)).ToArray());
                    return (JsonNode)entry;
                }).ToArray()),
                ["refusal"] = null,
            };
        var top = new JsonArray();
        foreach (var t in tokens)
        {
            var alternatives = new JsonObject();
            foreach (var x in t.TopLogprobs ?? []) alternatives[x.Text] = x.Logprob;   // later duplicates of one text overwrite
            alternatives[t.Logprob!.Text] = t.Logprob.Logprob;                         // OpenAI always lists the chosen token
            top.Add(alternatives);
        }
        return new JsonObject
        {
            ["tokens"] = new JsonArray(tokens.Select(t => (JsonNode)JsonValue.Create(t.TokenText)!).ToArray()),
            ["token_logprobs"] = new JsonArray(tokens.Select(t => (JsonNode)JsonValue.Create(t.Logprob!.Logprob)!).ToArray()),
            ["top_logprobs"] = top,
            ["text_offset"] = new JsonArray(tokens.Select(t => (JsonNode)JsonValue.Create(t.TextOffset)!).ToArray()),
        };
    }

    private static JsonObject ChatEntry(TokenLogprob x) => new()
    {
        ["token"] = x.Text, ["logprob"] = x.Logprob,
        ["bytes"] = new JsonArray(x.Bytes.Select(b => (JsonNode)JsonValue.Create((int)b)!).ToArray()),
    };

    /// <summary>One token's routing: top-k adapters overall and per layer group (k = the request's top-k; 1 when forced).</summary>
    private JsonObject Routing(TokenEvent t)
    {
        var entry = new JsonObject { ["token"] = t.TokenText };
        if (t.Routing is null) { entry["adapters"] = new JsonArray(); entry["groups"] = new JsonArray(); return entry; }
        int k = request.Route.Mode == RouteMode.Gates ? request.Route.TopK : 1;
        entry["adapters"] = Top(t.Routing.Overall(), k);
        entry["groups"] = new JsonArray(t.Routing.Groups.Select((g, i) => (JsonNode)new JsonObject
        {
            ["layers"] = new JsonArray(groups[i].First, groups[i].Last), ["adapters"] = Top(g, k),
        }).ToArray());
        return entry;
    }

    private JsonArray Top(float[] weights, int k) => new(weights.Select((w, j) => (w, j)).Where(x => x.w > 0).OrderByDescending(x => x.w).Take(k)
        .Select(x => (JsonNode)new JsonObject { ["name"] = model.AdapterNames[x.j], ["weight"] = Math.Round(x.w, 4) }).ToArray());

    private static JsonObject Usage(IReadOnlyList<ChoiceResult> choices)
    {
        // Prompt tokens once per prompt (OpenAI counts a prompt once however many choices it has).
        int prompt = choices.GroupBy(c => c.PromptIndex).Sum(g => g.First().Finish?.PromptTokens ?? 0);
        int completion = choices.Sum(c => c.Finish?.CompletionTokens ?? 0);
        return new JsonObject { ["prompt_tokens"] = prompt, ["completion_tokens"] = completion, ["total_tokens"] = prompt + completion };
    }
}
