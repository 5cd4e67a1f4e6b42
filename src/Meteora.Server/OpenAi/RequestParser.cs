using System.Text.Json;
using Meteora.Moe;
using Meteora.Serving;
using Meteora.Tokenization;
using Meteora.Tokenization.Jinja;

namespace Meteora.Server.OpenAi;

/// <summary>
/// Reads /v1/completions and /v1/chat/completions bodies into <see cref="GenerationRequest"/>s, checking every
/// field as OpenAI does: unknown fields, wrong types and out-of-range values are 400s naming the field; an
/// unknown model is a 404. Chat messages become a prompt through the model's chat template when the server has one
/// (<paramref name="template"/>), else through the plain <see cref="ChatTemplate"/>.
/// </summary>
public sealed class RequestParser(ServingEngine engine, HfChatTemplate? template = null)
{
    private static readonly HashSet<string> Shared =
    [
        "model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "presence_penalty",
        "frequency_penalty", "logit_bias", "user", "seed", "logprobs", "meteora", "ignore_eos",
    ];
    private static readonly HashSet<string> CompletionFields = [.. Shared, "prompt", "suffix", "echo", "best_of"];
    private static readonly HashSet<string> ChatFields =
    [
        .. Shared, "messages", "max_completion_tokens", "top_logprobs", "response_format", "store", "metadata",
        "tools", "tool_choice", "parallel_tool_calls", "service_tier",
    ];
    private static readonly HashSet<string> RoutingFields = ["top_k", "temperature", "return_routing"];
    private static readonly HashSet<string> StreamOptionFields = ["include_usage"];
    private static readonly HashSet<string> MessageFields = ["role", "content", "name", "refusal", "tool_calls"];

    private ServingModel Model => engine.Model;

    /// <summary>A /v1/completions body.</summary>
    public GenerationRequest Completion(JsonElement body)
    {
        var f = new JsonFields(body, "completion request");
        f.OnlyKnown(CompletionFields);
        if (f.Get("suffix") is not null) throw ApiException.BadRequest("suffix is not supported", "suffix", "unsupported_parameter");
        var (prompts, texts) = Prompts(f);
        int? logprobs = f.IntegerIn("logprobs", 0, 20);
        int n = f.IntegerIn("n", 1, 128) ?? 1;
        if (f.IntegerIn("best_of", 1, 128) is { } bestOf && bestOf != n)
            throw ApiException.BadRequest($"best_of: only best_of = n ({n}) is supported", "best_of", "unsupported_parameter");
        bool echo = f.Bool("echo") ?? false;
        if (echo && logprobs is not null) throw ApiException.BadRequest("echo with logprobs (prompt log-probabilities) is not supported", "echo", "unsupported_parameter");
        return Common(f, chat: false, prompts, texts, n, logprobs, defaultMaxTokens: 16) with { Echo = echo };
    }

    /// <summary>A /v1/chat/completions body.</summary>
    public GenerationRequest ChatCompletion(JsonElement body)
    {
        var f = new JsonFields(body, "chat completion request");
        f.OnlyKnown(ChatFields);
        if (f.Get("tools") is { ValueKind: JsonValueKind.Array } tools && tools.GetArrayLength() > 0)
            throw ApiException.BadRequest("tools are not supported", "tools", "unsupported_parameter");
        if (f.Get("tool_choice") is { } choice && !(choice.ValueKind == JsonValueKind.String && choice.GetString() == "none"))
            throw ApiException.BadRequest("tool_choice: only \"none\" is supported", "tool_choice", "unsupported_parameter");
        if (f.Get("response_format") is { } format)
        {
            var rf = new JsonFields(format, "response_format", "response_format.");
            rf.OnlyKnown(new HashSet<string> { "type" });
            if (rf.RequiredString("type") != "text")
                throw ApiException.BadRequest("response_format: only {\"type\": \"text\"} is supported", "response_format.type", "unsupported_parameter");
        }
        if (f.Get("metadata") is { } meta && meta.ValueKind != JsonValueKind.Object) throw f.TypeError("metadata", "an object", meta);
        f.Bool("store"); f.Bool("parallel_tool_calls"); f.String("service_tier");
        var (text, prompt) = ChatPrompt(Messages(f));
        bool logprobs = f.Bool("logprobs") ?? false;
        int? top = f.IntegerIn("top_logprobs", 0, 20);
        if (top is not null && !logprobs) throw ApiException.BadRequest("top_logprobs needs logprobs: true", "top_logprobs", "invalid_value");
        int n = f.IntegerIn("n", 1, 128) ?? 1;
        if (f.IntegerIn("max_completion_tokens", 1, int.MaxValue) is { } mct && f.Get("max_tokens") is not null)
            throw ApiException.BadRequest("give max_tokens or max_completion_tokens, not both", "max_completion_tokens", "invalid_value");
        return Common(f, chat: true, [prompt], [text], n, logprobs ? top ?? 0 : null, defaultMaxTokens: null);
    }

    private GenerationRequest Common(JsonFields f, bool chat, IReadOnlyList<int[]> prompts, IReadOnlyList<string> texts, int n, int? logprobs, int? defaultMaxTokens)
    {
        string model = f.RequiredString("model");
        var route = Routing(f, model);
        int? maxTokens = f.IntegerIn("max_tokens", 1, int.MaxValue) ?? (chat ? f.IntegerIn("max_completion_tokens", 1, int.MaxValue) : null);
        int longest = prompts.Max(p => p.Length);
        if (maxTokens is null && defaultMaxTokens is null && longest >= engine.MaxContext)
            throw ApiException.BadRequest($"This model's maximum context length is {engine.MaxContext} tokens, and the messages take {longest}", "messages", "context_length_exceeded");
        var sampling = new SamplingSettings
        {
            MaxTokens = maxTokens ?? defaultMaxTokens ?? engine.MaxContext - longest,
            Temperature = f.NumberIn("temperature", 0, 2) ?? 1.0,
            TopP = f.NumberIn("top_p", 0, 1) ?? 1.0,
            Seed = f.Integer("seed"),
            Stop = Stop(f),
            Logprobs = logprobs,
            IgnoreEos = f.Bool("ignore_eos") ?? false,   // vLLM's extension: run to max_tokens (benchmarks)
        };
        if (sampling.TopP == 0) throw ApiException.BadRequest("top_p: 0 is out of range (0, 1]", "top_p", "invalid_value");
        foreach (var penalty in new[] { "presence_penalty", "frequency_penalty" })
            if (f.NumberIn(penalty, -2, 2) is { } p && p != 0)
                throw ApiException.BadRequest($"{penalty}: only 0 is supported", penalty, "unsupported_parameter");
        if (f.Get("logit_bias") is { } bias && (bias.ValueKind != JsonValueKind.Object || bias.EnumerateObject().Any()))
            throw ApiException.BadRequest("logit_bias is not supported", "logit_bias", "unsupported_parameter");
        f.String("user");
        bool stream = f.Bool("stream") ?? false;
        bool includeUsage = false;
        if (f.Get("stream_options") is { } so)
        {
            if (!stream) throw ApiException.BadRequest("stream_options is only allowed when stream is true", "stream_options", "invalid_value");
            var o = new JsonFields(so, "stream_options", "stream_options.");
            o.OnlyKnown(StreamOptionFields);
            includeUsage = o.Bool("include_usage") ?? false;
        }
        foreach (var p in prompts)
            if ((long)p.Length + sampling.MaxTokens > engine.MaxContext)
                throw ApiException.BadRequest($"This model's maximum context length is {engine.MaxContext} tokens. However, you requested "
                    + $"{p.Length + sampling.MaxTokens} tokens ({p.Length} in the {(chat ? "messages" : "prompt")}, {sampling.MaxTokens} for the completion). "
                    + "Please reduce the length of the prompt or max_tokens.", "max_tokens", "context_length_exceeded");
        return new GenerationRequest
        {
            Chat = chat, Model = model, Prompts = prompts, PromptTexts = texts, Sampling = sampling, Route = route, N = n,
            Stream = stream, IncludeUsage = includeUsage,
        };
    }

    /// <summary>The <c>meteora</c> extension object and the model name → routing; unknown models are 404s.</summary>
    private RouteChoice Routing(JsonFields f, string model)
    {
        int? topK = null; double? temperature = null; bool returnRouting = false;
        if (f.Get("meteora") is { } ext)
        {
            var m = new JsonFields(ext, "meteora", "meteora.");
            m.OnlyKnown(RoutingFields);
            int n = Math.Max(1, Model.AdapterNames.Count);
            if (m.Integer("top_k") is { } k && (k < 1 || k > n))
                throw ApiException.BadRequest($"meteora.top_k: {k} must be between 1 and the {n} adapters", "meteora.top_k", "invalid_value");
            topK = (int?)m.Integer("top_k");
            temperature = m.Number("temperature");
            if (temperature is { } t && !(t >= RowRouting.MinTemperature && double.IsFinite(t)))
                throw ApiException.BadRequest($"meteora.temperature: {t} must be a number ≥ {RowRouting.MinTemperature}", "meteora.temperature", "invalid_value");
            returnRouting = m.Bool("return_routing") ?? false;
        }
        try
        {
            return Model.Choose(model, topK, temperature, returnRouting);
        }
        catch (ServingRequestException e) when (e.Code == "model_not_found")
        {
            throw new ApiException(404, e.Message, "model", "model_not_found");
        }
        catch (ServingRequestException e)
        {
            throw ApiException.BadRequest(e.Message, e.Param, e.Code);
        }
    }

    private (IReadOnlyList<int[]>, IReadOnlyList<string>) Prompts(JsonFields f)
    {
        var p = f.Get("prompt") ?? throw ApiException.BadRequest("you must provide 'prompt'", "prompt", "missing_required_parameter");
        var tokenizer = Model.Tokenizer;
        if (p.ValueKind == JsonValueKind.String) return ([tokenizer.Encode(p.GetString()!)], [p.GetString()!]);
        if (p.ValueKind != JsonValueKind.Array) throw f.TypeError("prompt", "a string, an array of strings or an array of token ids", p);
        var items = p.EnumerateArray().ToList();
        if (items.Count == 0) throw ApiException.BadRequest("prompt must not be empty", "prompt", "invalid_value");
        if (items.All(i => i.ValueKind == JsonValueKind.String))
            return (items.Select(i => tokenizer.Encode(i.GetString()!)).ToList(), items.Select(i => i.GetString()!).ToList());
        if (items.All(i => i.ValueKind == JsonValueKind.Number))
        {
            var ids = TokenIds(p, "prompt");
            return ([ids], [tokenizer.Decode(ids)]);
        }
        if (items.All(i => i.ValueKind == JsonValueKind.Array))
        {
            var lists = items.Select((i, j) => TokenIds(i, $"prompt[{j}]")).ToList();
            return (lists, lists.Select(l => tokenizer.Decode(l)).ToList());
        }
        throw ApiException.BadRequest("prompt must be a string, an array of strings, an array of token ids or an array of such arrays", "prompt", "invalid_type");
    }

    private int[] TokenIds(JsonElement array, string name)
    {
        int vocab = Model.Lm.Config.VocabSize;
        var ids = new List<int>();
        foreach (var e in array.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int id))
                throw ApiException.BadRequest($"{name} must hold integer token ids, not {JsonFields.Kind(e)}", "prompt", "invalid_type");
            if (id < 0 || id >= vocab) throw ApiException.BadRequest($"{name}: token id {id} is outside the vocabulary of {vocab}", "prompt", "invalid_value");
            ids.Add(id);
        }
        if (ids.Count == 0) throw ApiException.BadRequest($"{name} must not be empty", "prompt", "invalid_value");
        return ids.ToArray();
    }

    private static IReadOnlyList<string> Stop(JsonFields f)
    {
        if (f.Get("stop") is not { } s) return [];
        List<string> stops = s.ValueKind switch
        {
            JsonValueKind.String => [s.GetString()!],
            JsonValueKind.Array when s.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) => s.EnumerateArray().Select(e => e.GetString()!).ToList(),
            _ => throw f.TypeError("stop", "a string or an array of strings", s),
        };
        if (stops.Count > 4) throw ApiException.BadRequest($"stop: at most 4 sequences, not {stops.Count}", "stop", "invalid_value");
        if (stops.Any(x => x.Length == 0)) throw ApiException.BadRequest("stop: sequences must not be empty", "stop", "invalid_value");
        if (stops.Any(x => x.Length > SamplingSettings.MaxStopLength))
            throw ApiException.BadRequest($"stop: sequences must be at most {SamplingSettings.MaxStopLength} characters", "stop", "invalid_value");
        return stops;
    }

    /// <summary>
    /// The prompt text and ids for chat <paramref name="messages"/>. A model template writes its own special tokens
    /// (so none are added when encoding, as transformers' apply_chat_template does) and sees OpenAI's "developer"
    /// role as "system"; a template that refuses the conversation (raise_exception) or fails on it is a 400.
    /// </summary>
    private (string Text, int[] Ids) ChatPrompt(List<(string Role, string Content)> messages)
    {
        if (template is null)
        {
            string plain = ChatTemplate.Render(messages);
            return (plain, Model.Tokenizer.Encode(plain));
        }
        string text;
        try
        {
            text = template.Render(messages.Select(m => (IReadOnlyDictionary<string, object?>)new Dictionary<string, object?>
            {
                ["role"] = m.Role == "developer" ? "system" : m.Role, ["content"] = m.Content,
            }).ToList(), addGenerationPrompt: true);
        }
        catch (TemplateRenderException e)
        {
            throw ApiException.BadRequest(e.Message, "messages", e.Raised ? "invalid_value" : "chat_template_error");
        }
        return (text, Model.Tokenizer.Encode(text, addSpecialTokens: false));
    }

    private static List<(string Role, string Content)> Messages(JsonFields f)
    {
        var m = f.Get("messages") ?? throw ApiException.BadRequest("you must provide 'messages'", "messages", "missing_required_parameter");
        if (m.ValueKind != JsonValueKind.Array) throw f.TypeError("messages", "an array", m);
        var result = new List<(string, string)>();
        int i = 0;
        foreach (var e in m.EnumerateArray())
        {
            var mf = new JsonFields(e, "message", $"messages[{i}].");
            mf.OnlyKnown(MessageFields);
            string role = mf.RequiredString("role");
            if (!ChatTemplate.Roles.Contains(role))
                throw ApiException.BadRequest($"messages[{i}].role: '{role}' is not supported (system, developer, user or assistant)", $"messages[{i}].role", "invalid_value");
            if (mf.Get("tool_calls") is { ValueKind: JsonValueKind.Array } calls && calls.GetArrayLength() > 0)
                throw ApiException.BadRequest("tool calls are not supported", $"messages[{i}].tool_calls", "unsupported_parameter");
            mf.String("name"); mf.String("refusal");
            result.Add((role, Content(mf, i)));
            i++;
        }
        if (result.Count == 0) throw ApiException.BadRequest("messages must not be empty", "messages", "invalid_value");
        return result;
    }

    /// <summary>A message's content: a string, or an array of text parts (joined).</summary>
    private static string Content(JsonFields mf, int i)
    {
        var c = mf.Get("content");
        if (c is null) return "";
        if (c.Value.ValueKind == JsonValueKind.String) return c.Value.GetString()!;
        if (c.Value.ValueKind != JsonValueKind.Array) throw mf.TypeError("content", "a string or an array of content parts", c.Value);
        var text = new System.Text.StringBuilder();
        int j = 0;
        foreach (var part in c.Value.EnumerateArray())
        {
            var pf = new JsonFields(part, "content part", $"messages[{i}].content[{j}].");
            pf.OnlyKnown(new HashSet<string> { "type", "text" });
            if (pf.RequiredString("type") != "text")
                throw ApiException.BadRequest($"messages[{i}].content[{j}].type: only text parts are supported", $"messages[{i}].content[{j}].type", "unsupported_parameter");
            text.Append(pf.RequiredString("text"));
            j++;
        }
        return text.ToString();
    }
}
