using System.Text.Json;

namespace Meteora.Tokenization;

/// <summary>
/// Reading a model folder's <c>tokenizer_config.json</c>: its special tokens, which the tokenizer (BOS/EOS) and the
/// chat template (as template variables) both need.
/// </summary>
internal static class TokenizerConfig
{
    public const string FileName = "tokenizer_config.json";

    /// <summary>The special-token keys transformers passes to a chat template.</summary>
    public static readonly string[] SpecialTokenKeys = ["bos_token", "eos_token", "unk_token", "pad_token"];

    /// <summary>The JSON at <paramref name="path"/>; invalid JSON is a one-line <see cref="MeteoraException"/> naming the file.</summary>
    public static JsonElement Read(string path)
    {
        try { return JsonDocument.Parse(File.ReadAllText(path)).RootElement; }
        catch (JsonException e) { throw new MeteoraException($"{path}: invalid JSON ({e.Message.Split('\n')[0]})"); }
    }

    /// <summary>As <see cref="Read"/>, and anything but a JSON object is an error too.</summary>
    public static JsonElement ReadObject(string path)
    {
        var root = Read(path);
        if (root.ValueKind != JsonValueKind.Object) throw new MeteoraException($"{path}: expected a JSON object");
        return root;
    }

    /// <summary>
    /// The special tokens of <see cref="SpecialTokenKeys"/> that <paramref name="root"/> (a parsed tokenizer_config.json)
    /// names: each a plain string or an AddedToken object <c>{"content": …}</c>; anything else is left out.
    /// </summary>
    public static Dictionary<string, string> SpecialTokens(JsonElement root)
    {
        var tokens = new Dictionary<string, string>();
        if (root.ValueKind != JsonValueKind.Object) return tokens;
        foreach (string key in SpecialTokenKeys)
        {
            if (!root.TryGetProperty(key, out var v)) continue;
            string? text = v.ValueKind == JsonValueKind.String ? v.GetString()
                : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString()
                : null;
            if (text is not null) tokens[key] = text;
        }
        return tokens;
    }
}
