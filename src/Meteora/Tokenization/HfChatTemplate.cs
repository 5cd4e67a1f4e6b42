using System.Text.Json;
using Meteora.Tokenization.Jinja;

namespace Meteora.Tokenization;

/// <summary>
/// A model's own chat template, as transformers' <c>apply_chat_template</c> renders it: the Jinja source from
/// <c>tokenizer_config.json</c> (<c>chat_template</c>, a string or a list of named templates, "default" taken),
/// else <c>chat_template.jinja</c> or <c>chat_template.json</c> beside it; rendered with <c>messages</c>,
/// <c>add_generation_prompt</c>, <c>tools</c> and <c>documents</c> (none), and the special tokens
/// (<c>bos_token</c>, <c>eos_token</c>, <c>unk_token</c>, <c>pad_token</c>) as variables. The rendered text already
/// holds whatever special tokens the template writes, so it is encoded without adding BOS again.
/// </summary>
public sealed class HfChatTemplate
{
    private readonly JinjaTemplate _template;
    private readonly Dictionary<string, object?> _specialTokens;

    private HfChatTemplate(JinjaTemplate template, Dictionary<string, object?> specialTokens, string origin)
    {
        _template = template; _specialTokens = specialTokens; Origin = origin;
    }

    /// <summary>The file the template came from.</summary>
    public string Origin { get; }

    /// <summary>The Jinja source.</summary>
    public string Source => _template.Source;

    /// <summary>
    /// The template of the model folder <paramref name="folder"/>, or null when it has none. A template that does not
    /// parse, or a malformed tokenizer_config.json, is a <see cref="MeteoraException"/> naming the file.
    /// </summary>
    public static HfChatTemplate? Load(string folder)
    {
        string config = Path.Combine(folder, "tokenizer_config.json");
        var tokens = new Dictionary<string, object?>();
        string? source = null, origin = null;
        if (File.Exists(config))
        {
            JsonElement root;
            try { root = JsonDocument.Parse(File.ReadAllText(config)).RootElement; }
            catch (JsonException e) { throw new MeteoraException($"{config}: invalid JSON ({e.Message.Split('\n')[0]})"); }
            if (root.ValueKind != JsonValueKind.Object) throw new MeteoraException($"{config}: expected a JSON object");
            foreach (string name in new[] { "bos_token", "eos_token", "unk_token", "pad_token" })
                if (TokenText(root, name) is { } text) tokens[name] = text;
            if (root.TryGetProperty("chat_template", out var t) && t.ValueKind != JsonValueKind.Null)
            {
                source = t.ValueKind switch
                {
                    JsonValueKind.String => t.GetString(),
                    JsonValueKind.Array => t.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.Object && e.TryGetProperty("name", out var n) && n.GetString() == "default")
                        .Select(e => e.TryGetProperty("template", out var s) && s.ValueKind == JsonValueKind.String ? s.GetString() : null).FirstOrDefault()
                        ?? throw new MeteoraException($"{config}: chat_template is a list without a \"default\" template"),
                    _ => throw new MeteoraException($"{config}: chat_template must be a string or a list of {{name, template}}, not {t.ValueKind.ToString().ToLowerInvariant()}"),
                };
                origin = config;
            }
        }
        string jinjaFile = Path.Combine(folder, "chat_template.jinja"), jsonFile = Path.Combine(folder, "chat_template.json");
        if (source is null && File.Exists(jinjaFile)) { source = File.ReadAllText(jinjaFile); origin = jinjaFile; }
        if (source is null && File.Exists(jsonFile))
        {
            try
            {
                var root = JsonDocument.Parse(File.ReadAllText(jsonFile)).RootElement;
                source = root.TryGetProperty("chat_template", out var s) && s.ValueKind == JsonValueKind.String ? s.GetString()
                    : throw new MeteoraException($"{jsonFile}: no \"chat_template\" string");
            }
            catch (JsonException e) { throw new MeteoraException($"{jsonFile}: invalid JSON ({e.Message.Split('\n')[0]})"); }
            origin = jsonFile;
        }
        if (source is null) return null;
        try { return new HfChatTemplate(JinjaTemplate.Parse(source), tokens, origin!); }
        catch (MeteoraException e) { throw new MeteoraException($"{origin}: {e.Message}"); }
    }

    /// <summary>
    /// A template file chosen by the user (<c>serve --chat-template FILE</c>) rendered with the special tokens of the
    /// model folder <paramref name="modelFolder"/>.
    /// </summary>
    public static HfChatTemplate FromFile(string path, string modelFolder)
    {
        if (!File.Exists(path)) throw new MeteoraException($"{path}: chat template file not found");
        var tokens = new Dictionary<string, object?>();
        string config = Path.Combine(modelFolder, "tokenizer_config.json");
        if (File.Exists(config))
        {
            try
            {
                var root = JsonDocument.Parse(File.ReadAllText(config)).RootElement;
                if (root.ValueKind == JsonValueKind.Object)
                    foreach (string name in new[] { "bos_token", "eos_token", "unk_token", "pad_token" })
                        if (TokenText(root, name) is { } text) tokens[name] = text;
            }
            catch (JsonException e) { throw new MeteoraException($"{config}: invalid JSON ({e.Message.Split('\n')[0]})"); }
        }
        try { return new HfChatTemplate(JinjaTemplate.Parse(File.ReadAllText(path)), tokens, path); }
        catch (MeteoraException e) { throw new MeteoraException($"{path}: {e.Message}"); }
    }

    /// <summary>Wraps a template source directly (tests, or a template file given on the command line).</summary>
    public static HfChatTemplate FromSource(string source, IReadOnlyDictionary<string, string>? specialTokens = null, string origin = "template") =>
        new(JinjaTemplate.Parse(source), specialTokens?.ToDictionary(kv => kv.Key, kv => (object?)kv.Value) ?? [], origin);

    /// <summary>
    /// The prompt text for <paramref name="messages"/> (each with at least "role" and "content"; other keys such as
    /// "tool_calls" pass through). <see cref="TemplateRenderException"/> when the template refuses them.
    /// </summary>
    public string Render(IReadOnlyList<IReadOnlyDictionary<string, object?>> messages, bool addGenerationPrompt = true, IReadOnlyList<object?>? tools = null)
    {
        var context = new Dictionary<string, object?>(_specialTokens)
        {
            ["messages"] = messages.Select(m => (object?)m.ToDictionary(kv => kv.Key, kv => kv.Value)).ToList(),
            ["add_generation_prompt"] = addGenerationPrompt,
            ["tools"] = tools?.ToList(),
            ["documents"] = null,
        };
        return _template.Render(context);
    }

    // A special token in tokenizer_config.json: a string, or an AddedToken object {"content": …}.
    private static string? TokenText(JsonElement root, string name) =>
        !root.TryGetProperty(name, out var v) ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString()
        : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString()
        : null;
}
