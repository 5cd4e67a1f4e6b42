using System.Text.Json;
using System.Text.Json.Nodes;

namespace Meteora.IO;

/// <summary>
/// Strict readers for the keys of a configuration file (config.json, adapter_config.json, meteora_config.json). An
/// absent key or JSON null gives null, so the caller's documented default applies (Hugging Face writes null for
/// several keys); a key holding a value of the wrong type or range is a one-line <see cref="MeteoraException"/>
/// naming the file and the key — never a silent fall-back to the default (`rms_norm_eps: ""` used to give 1e-6,
/// `lora_alpha: []` 8, `top_k: ""` 2).
/// </summary>
public static class JsonFields
{
    private static JsonNode? Present(JsonObject o, string key) => o[key] is { } n && n.GetValueKind() != JsonValueKind.Null ? n : null;

    private static MeteoraException Wrong(string path, string key, string expected, JsonNode node) =>
        new($"{path}: '{key}' must be {expected}, not {node.ToJsonString()}");

    /// <summary>A string.</summary>
    public static string? Str(JsonObject o, string key, string path) => Present(o, key) switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        var n => throw Wrong(path, key, "a string", n),
    };

    /// <summary>true or false.</summary>
    public static bool? Bool(JsonObject o, string key, string path) => Present(o, key) switch
    {
        null => null,
        JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => v.GetValue<bool>(),
        var n => throw Wrong(path, key, "true or false", n),
    };

    /// <summary>A finite number, greater than 0 when <paramref name="positive"/>, at least 0 when <paramref name="nonNegative"/>.</summary>
    public static double? Double(JsonObject o, string key, string path, bool positive = false, bool nonNegative = false) => Present(o, key) switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out double d) && double.IsFinite(d)
                         && (!positive || d > 0) && (!nonNegative || d >= 0) => d,
        var n => throw Wrong(path, key, positive ? "a number > 0" : nonNegative ? "a number ≥ 0" : "a finite number", n),
    };

    /// <summary>An integer at least <paramref name="min"/>.</summary>
    public static int? Int(JsonObject o, string key, string path, int min = 0) => Present(o, key) switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out int i) && i >= min => i,
        var n => throw Wrong(path, key, $"an integer ≥ {min}", n),
    };

    /// <summary>An integer ≥ 0 or a list of them (null when absent).</summary>
    public static int[]? IntList(JsonObject o, string key, string path, string what = "an integer ≥ 0 or a list of them") => Present(o, key) switch
    {
        null => null,
        JsonArray a => a.Select(x => x is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out int i) && i >= 0
            ? i : throw Wrong(path, key, what, a)).ToArray(),
        JsonValue v when v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out int i) && i >= 0 => [i],
        var n => throw Wrong(path, key, what, n),
    };

    /// <summary>A list of strings (null when absent).</summary>
    public static string[]? StrList(JsonObject o, string key, string path) => Present(o, key) switch
    {
        null => null,
        JsonArray a => a.Select(x => x is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : throw Wrong(path, key, "a list of strings", a)).ToArray(),
        var n => throw Wrong(path, key, "a list of strings", n),
    };

    /// <summary>An object.</summary>
    public static JsonObject? Obj(JsonObject o, string key, string path) => Present(o, key) switch
    {
        null => null,
        JsonObject obj => obj,
        var n => throw Wrong(path, key, "an object", n),
    };

    /// <summary>A positive integer that must be there.</summary>
    public static int RequiredInt(JsonObject o, string key, string path) =>
        Int(o, key, path, min: 1) ?? throw new MeteoraException($"{path}: missing '{key}'");
}
