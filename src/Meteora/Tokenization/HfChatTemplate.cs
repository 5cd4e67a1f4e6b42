using System.Text.Json;
using Meteora.Tokenization.Jinja;

namespace Meteora.Tokenization;

/// <summary>
/// A model's own chat template, as transformers' <c>apply_chat_template</c> renders it (where it is found: see
/// <see cref="Load"/>); rendered with <c>messages</c>,
/// <c>add_generation_prompt</c>, <c>tools</c> and <c>documents</c> (none), and the special tokens
/// (<c>bos_token</c>, <c>eos_token</c>, <c>unk_token</c>, <c>pad_token</c>) as variables. The rendered text already
/// holds whatever special tokens the template writes, so it is encoded without adding BOS again.
/// </summary>
public sealed class HfChatTemplate
{
    private readonly JinjaTemplate _template;
    private readonly JinjaTemplate? _toolUse;
    private readonly Dictionary<string, object?> _specialTokens;

    private HfChatTemplate(JinjaTemplate template, JinjaTemplate? toolUse, Dictionary<string, object?> specialTokens, string origin)
    {
        _template = template; _toolUse = toolUse; _specialTokens = specialTokens; Origin = origin;
    }

    /// <summary>The file the template came from.</summary>
    public string Origin { get; }

    /// <summary>The Jinja source (of the default template).</summary>
    public string Source => _template.Source;

    /// <summary>
    /// The template of the model folder <paramref name="folder"/>, or null when it has none. As transformers reads a
    /// folder: <c>chat_template.jinja</c> first, then <c>chat_template.json</c>, then <c>tokenizer_config.json</c>'s
    /// <c>chat_template</c> (a string, or a list of named templates: "default", and "tool_use" for requests with
    /// tools). A template that does not parse, or a malformed file, is a <see cref="MeteoraException"/> naming it.
    /// </summary>
    public static HfChatTemplate? Load(string folder)
    {
        string config = Path.Combine(folder, TokenizerConfig.FileName);
        JsonElement? configRoot = File.Exists(config) ? TokenizerConfig.ReadObject(config) : null;
        var tokens = TokensOf(configRoot);
        string jinjaFile = Path.Combine(folder, "chat_template.jinja"), jsonFile = Path.Combine(folder, "chat_template.json");
        if (File.Exists(jinjaFile)) return Build(File.ReadAllText(jinjaFile), null, tokens, jinjaFile);
        if (File.Exists(jsonFile))
        {
            if (!TokenizerConfig.ReadObject(jsonFile).TryGetProperty("chat_template", out var t))
                throw new MeteoraException($"{jsonFile}: no \"chat_template\"");
            return FromJsonValue(t, tokens, jsonFile);
        }
        return configRoot is { } root && root.TryGetProperty("chat_template", out var ct) && ct.ValueKind != JsonValueKind.Null
            ? FromJsonValue(ct, tokens, config) : null;
    }

    private static HfChatTemplate FromJsonValue(JsonElement t, Dictionary<string, object?> tokens, string origin)
    {
        switch (t.ValueKind)
        {
            case JsonValueKind.String: return Build(t.GetString()!, null, tokens, origin);
            case JsonValueKind.Array:
            {
                var named = new Dictionary<string, string>();
                foreach (var e in t.EnumerateArray())
                    if (e.ValueKind == JsonValueKind.Object && e.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String
                        && e.TryGetProperty("template", out var s) && s.ValueKind == JsonValueKind.String)
                        named[n.GetString()!] = s.GetString()!;
                if (!named.TryGetValue("default", out var dflt))
                    throw new MeteoraException($"{origin}: chat_template is a list without a \"default\" template");
                return Build(dflt, named.GetValueOrDefault("tool_use"), tokens, origin);
            }
            default:
                throw new MeteoraException($"{origin}: chat_template must be a string or a list of {{name, template}}, not {t.ValueKind.ToString().ToLowerInvariant()}");
        }
    }

    private static HfChatTemplate Build(string source, string? toolUse, Dictionary<string, object?> tokens, string origin)
    {
        try { return new HfChatTemplate(JinjaTemplate.Parse(source), toolUse is null ? null : JinjaTemplate.Parse(toolUse), tokens, origin); }
        catch (MeteoraException e) { throw new MeteoraException($"{origin}: {e.Message}"); }
    }

    // The template variables for the special tokens of a tokenizer_config.json (none without one).
    private static Dictionary<string, object?> TokensOf(JsonElement? configRoot) =>
        configRoot is { } root ? TokenizerConfig.SpecialTokens(root).ToDictionary(kv => kv.Key, kv => (object?)kv.Value) : [];

    /// <summary>
    /// A template file chosen by the user (<c>serve --chat-template FILE</c>) rendered with the special tokens of the
    /// model folder <paramref name="modelFolder"/>.
    /// </summary>
    public static HfChatTemplate FromFile(string path, string modelFolder)
    {
        if (!File.Exists(path)) throw new MeteoraException($"{path}: chat template file not found");
        string config = Path.Combine(modelFolder, TokenizerConfig.FileName);
        return Build(File.ReadAllText(path), null, TokensOf(File.Exists(config) ? TokenizerConfig.ReadObject(config) : null), path);
    }

    /// <summary>Wraps a template source directly (tests, or a template file given on the command line).</summary>
    public static HfChatTemplate FromSource(string source, IReadOnlyDictionary<string, string>? specialTokens = null, string origin = "template") =>
        Build(source, null, specialTokens?.ToDictionary(kv => kv.Key, kv => (object?)kv.Value) ?? [], origin);

    /// <summary>
    /// The prompt text for <paramref name="messages"/> (each with at least "role" and "content"; other keys such as
    /// "tool_calls" pass through); with <paramref name="tools"/>, the "tool_use" template where the model has one.
    /// <see cref="TemplateRenderException"/> when the template refuses them.
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
        return (tools is not null && _toolUse is not null ? _toolUse : _template).Render(context);
    }
}
