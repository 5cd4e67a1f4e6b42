using System.Text.Json;

namespace Meteora.Server.OpenAi;

/// <summary>
/// Strict reading of a JSON request object: every field's type is checked (a wrong type is a 400 naming the
/// field), and fields the endpoint does not know are refused as OpenAI refuses them.
/// </summary>
public sealed class JsonFields
{
    private readonly JsonElement _object;
    private readonly string _prefix;

    public JsonFields(JsonElement element, string what, string prefix = "")
    {
        if (element.ValueKind != JsonValueKind.Object)
            throw ApiException.BadRequest($"{(prefix.Length == 0 ? "the request body" : prefix.TrimEnd('.'))} must be a JSON object, not {Kind(element)}", prefix.Length == 0 ? null : prefix.TrimEnd('.'));
        _object = element; _prefix = prefix;
        What = what;
    }

    /// <summary>What the object is (for messages).</summary>
    public string What { get; }

    /// <summary>Refuses fields not in <paramref name="known"/>.</summary>
    public void OnlyKnown(IReadOnlySet<string> known)
    {
        foreach (var p in _object.EnumerateObject())
            if (!known.Contains(p.Name))
                throw ApiException.BadRequest($"Unrecognized request argument supplied: {_prefix}{p.Name}", _prefix + p.Name, "unknown_parameter");
    }

    /// <summary>The field, or null when absent or JSON null.</summary>
    public JsonElement? Get(string name) =>
        _object.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public string Name(string field) => _prefix + field;

    public string? String(string name) => Get(name) is { } v
        ? v.ValueKind == JsonValueKind.String ? v.GetString() : throw TypeError(name, "a string", v) : null;

    public string RequiredString(string name) => String(name) ?? throw ApiException.BadRequest($"you must provide '{_prefix}{name}'", _prefix + name, "missing_required_parameter");

    public bool? Bool(string name) => Get(name) is { } v
        ? v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw TypeError(name, "a boolean", v) : null;

    public long? Integer(string name) => Get(name) is { } v
        ? v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out long n) ? n : throw TypeError(name, "an integer", v) : null;

    public double? Number(string name) => Get(name) is { } v
        ? v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw TypeError(name, "a number", v) : null;

    /// <summary>An integer within [min, max], or null when absent.</summary>
    public int? IntegerIn(string name, long min, long max)
    {
        if (Integer(name) is not { } n) return null;
        if (n < min || n > max) throw ApiException.BadRequest($"{_prefix}{name}: {n} is out of range ({min}…{max})", _prefix + name, "invalid_value");
        return (int)n;
    }

    /// <summary>A number within [min, max], or null when absent.</summary>
    public double? NumberIn(string name, double min, double max)
    {
        if (Number(name) is not { } x) return null;
        if (!(x >= min && x <= max)) throw ApiException.BadRequest($"{_prefix}{name}: {x} is out of range ({min}…{max})", _prefix + name, "invalid_value");
        return x;
    }

    public ApiException TypeError(string name, string expected, JsonElement got) =>
        ApiException.BadRequest($"{_prefix}{name} must be {expected}, not {Kind(got)}", _prefix + name, "invalid_type");

    public static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object", JsonValueKind.Array => "an array", JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number", JsonValueKind.True or JsonValueKind.False => "a boolean", _ => "null",
    };
}
