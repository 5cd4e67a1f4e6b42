using System.Globalization;
using System.Text;

namespace Meteora.Tokenization.Jinja;

/// <summary>Jinja's undefined value: prints as nothing, is false, iterates as empty; its attributes are an error.</summary>
internal sealed class Undefined
{
    public static readonly Undefined Instance = new();
    private Undefined() { }
}

/// <summary>The object <c>namespace(…)</c> makes: the one value a template may assign attributes of (across loop scopes).</summary>
internal sealed class JinjaNamespace : Dictionary<string, object?>;

/// <summary>
/// What jinja2's select, reject, selectattr, rejectattr and map return: a generator, which is true even when empty
/// (<c>{% if messages | selectattr(…) %}</c> holds for any list); iterates like a list.
/// </summary>
internal sealed class JinjaGenerator(IEnumerable<object?> items) : List<object?>(items);

/// <summary>A function callable from a template: positional and keyword arguments in, a value out.</summary>
internal sealed record JinjaFunction(string Name, Func<List<object?>, Dictionary<string, object?>, object?> Invoke);

/// <summary>
/// Python semantics for template values: null is None, numbers are long or double, lists are List&lt;object?&gt;,
/// mappings are Dictionary&lt;string, object?&gt; (insertion-ordered, as Python's dict).
/// </summary>
internal static class JinjaValues
{
    public static bool Truthy(object? v) => v switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        JinjaGenerator => true,
        System.Collections.ICollection c => c.Count > 0,
        _ => true,
    };

    /// <summary>Python's <c>str()</c>, as <c>{{ … }}</c> prints.</summary>
    public static string Str(object? v) => v switch
    {
        Undefined => "",
        string s => s,
        _ => Repr(v),
    };

    /// <summary>Python's <c>repr()</c> (lists and dicts print their items this way).</summary>
    public static string Repr(object? v) => v switch
    {
        null => "None",
        Undefined => "",
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => Float(d),
        string s => ReprString(s),
        IDictionary<string, object?> m => "{" + string.Join(", ", m.Select(kv => Repr(kv.Key) + ": " + Repr(kv.Value))) + "}",
        List<object?> list => "[" + string.Join(", ", list.Select(Repr)) + "]",
        JinjaFunction f => $"<function {f.Name}>",
        _ => v.ToString() ?? "",
    };

    // CPython's str repr: double quotes when the text has ' and no ", else single quotes (escaping '); \\ \n \r \t
    // escaped; other characters that are not printable as \xNN, \uNNNN or \UNNNNNNNN.
    private static string ReprString(string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var sb = new StringBuilder().Append(quote);
        foreach (var rune in s.EnumerateRunes())
        {
            int v = rune.Value;
            if (v == '\\') sb.Append("\\\\");
            else if (v == quote) sb.Append('\\').Append(quote);
            else if (v == '\n') sb.Append("\\n");
            else if (v == '\r') sb.Append("\\r");
            else if (v == '\t') sb.Append("\\t");
            else if (Printable(rune)) sb.Append(rune.ToString());
            else sb.Append(v < 0x100 ? $"\\x{v:x2}" : v < 0x10000 ? $"\\u{v:x4}" : $"\\U{v:x8}");
        }
        return sb.Append(quote).ToString();
    }

    // Python's str.isprintable for one character: not Cc, Cf, Cs, Co, Cn, Zl, Zp, nor a space separator other than ' '.
    private static bool Printable(Rune r) => r.Value == ' ' || Rune.GetUnicodeCategory(r) is not (UnicodeCategory.Control or UnicodeCategory.Format
        or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned or UnicodeCategory.LineSeparator
        or UnicodeCategory.ParagraphSeparator or UnicodeCategory.SpaceSeparator);

    /// <summary>Python's float repr: shortest round trip, ".0" on integral values, "e-05" exponents.</summary>
    public static string Float(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        if (d == Math.Floor(d) && Math.Abs(d) < 1e16) return d.ToString("0", CultureInfo.InvariantCulture) + ".0";
        string r = d.ToString("R", CultureInfo.InvariantCulture);
        int e = r.IndexOf('E');
        if (e < 0) return r;
        string exponent = r[(e + 1)..];
        string sign = exponent.StartsWith('-') ? "-" : "+";
        string digits = exponent.TrimStart('+', '-').PadLeft(2, '0');
        return r[..e] + "e" + sign + digits;
    }

    /// <summary>
    /// Python's <c>json.dumps</c> as transformers' <c>tojson</c> calls it: <c>ensure_ascii</c> (default off here),
    /// <c>indent</c>, <c>separators</c> (item, key; defaults ", " and ": ", or "," between items when indented) and
    /// <c>sort_keys</c>. Undefined values and functions are not serializable (an exception).
    /// </summary>
    public static string Json(object? v, int? indent = null, bool ensureAscii = false, (string Item, string Key)? separators = null, bool sortKeys = false)
    {
        var sb = new StringBuilder();
        var seps = separators ?? (indent is null ? (", ", ": ") : (",", ": "));
        WriteJson(sb, v, indent, 0, ensureAscii, seps, sortKeys);
        return sb.ToString();
    }

    private static void WriteJson(StringBuilder sb, object? v, int? indent, int depth, bool ascii, (string Item, string Key) seps, bool sortKeys)
    {
        string Newline(int d) => indent is { } n ? "\n" + new string(' ', n * d) : "";
        switch (v)
        {
            case Undefined: throw new InvalidOperationException("Undefined is not JSON serializable");
            case null: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d: sb.Append(double.IsFinite(d) ? Float(d) : double.IsNaN(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity"); break;
            case string s:
                sb.Append('"');
                foreach (char c in s)
                    sb.Append(c switch
                    {
                        '"' => "\\\"", '\\' => "\\\\", '\n' => "\\n", '\r' => "\\r", '\t' => "\\t", '\b' => "\\b", '\f' => "\\f",
                        < ' ' => $"\\u{(int)c:x4}",
                        > '\x7f' when ascii => $"\\u{(int)c:x4}",            // UTF-16 units: astral characters become surrogate pairs, as Python writes them
                        _ => c.ToString(),
                    });
                sb.Append('"');
                break;
            case IDictionary<string, object?> m:
                if (m.Count == 0) { sb.Append("{}"); break; }
                sb.Append('{');
                int i = 0;
                foreach (var (key, value) in sortKeys ? m.OrderBy(kv => kv.Key, StringComparer.Ordinal) : m.AsEnumerable())
                {
                    if (i++ > 0) sb.Append(seps.Item);
                    sb.Append(Newline(depth + 1));
                    WriteJson(sb, key, indent, depth + 1, ascii, seps, sortKeys);
                    sb.Append(seps.Key);
                    WriteJson(sb, value, indent, depth + 1, ascii, seps, sortKeys);
                }
                sb.Append(Newline(depth)).Append('}');
                break;
            case List<object?> list:
                if (list.Count == 0) { sb.Append("[]"); break; }
                sb.Append('[');
                for (int j = 0; j < list.Count; j++)
                {
                    if (j > 0) sb.Append(seps.Item);
                    sb.Append(Newline(depth + 1));
                    WriteJson(sb, list[j], indent, depth + 1, ascii, seps, sortKeys);
                }
                sb.Append(Newline(depth)).Append(']');
                break;
            default: throw new InvalidOperationException($"{v.GetType().Name} is not JSON serializable");
        }
    }

    public static bool PyEquals(object? a, object? b) => (a, b) switch
    {
        (Undefined, Undefined) => true,
        (Undefined, _) or (_, Undefined) => false,
        (null, null) => true,
        (null, _) or (_, null) => false,
        (bool x, bool y) => x == y,
        (bool or long or double, bool or long or double) => ToDouble(a) == ToDouble(b),
        (string x, string y) => string.Equals(x, y, StringComparison.Ordinal),
        (List<object?> x, List<object?> y) => x.Count == y.Count && x.Zip(y).All(p => PyEquals(p.First, p.Second)),
        (IDictionary<string, object?> x, IDictionary<string, object?> y) =>
            x.Count == y.Count && x.All(kv => y.TryGetValue(kv.Key, out var o) && PyEquals(kv.Value, o)),
        _ => ReferenceEquals(a, b),
    };

    public static bool IsNumber(object? v) => v is long or double or bool;
    public static double ToDouble(object? v) => v switch { long l => l, double d => d, bool b => b ? 1 : 0, _ => throw new InvalidCastException() };

    /// <summary>The items a <c>for</c> loop or a filter iterates: list items, mapping keys, string characters.</summary>
    public static List<object?>? Items(object? v) => v switch
    {
        List<object?> list => list,
        IDictionary<string, object?> m => m.Keys.Cast<object?>().ToList(),
        string s => s.EnumerateRunes().Select(r => (object?)r.ToString()).ToList(),
        Undefined => [],
        _ => null,
    };

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType", Undefined => "Undefined", bool => "bool", long => "int", double => "float", string => "str",
        List<object?> => "list", IDictionary<string, object?> => "dict", JinjaFunction => "function", _ => v.GetType().Name,
    };

    /// <summary>A .NET value (from JSON, a dictionary, a list …) as a template value.</summary>
    public static object? From(object? v) => v switch
    {
        null or string or bool or long or double or Undefined or JinjaFunction => v,
        int i => (long)i,
        float f => (double)f,
        decimal m => (double)m,
        System.Text.Json.JsonElement e => FromJson(e),
        IDictionary<string, object?> d => d.ToDictionary(kv => kv.Key, kv => From(kv.Value)),
        IDictionary<string, string> d => d.ToDictionary(kv => kv.Key, kv => (object?)kv.Value),
        System.Collections.IEnumerable list => list.Cast<object?>().Select(From).ToList(),
        _ => v,
    };

    public static object? FromJson(System.Text.Json.JsonElement e) => e.ValueKind switch
    {
        System.Text.Json.JsonValueKind.String => e.GetString(),
        System.Text.Json.JsonValueKind.Number => e.TryGetInt64(out long l) ? l : e.GetDouble(),
        System.Text.Json.JsonValueKind.True => true,
        System.Text.Json.JsonValueKind.False => false,
        System.Text.Json.JsonValueKind.Array => e.EnumerateArray().Select(FromJson).ToList(),
        System.Text.Json.JsonValueKind.Object => e.EnumerateObject().ToDictionary(p => p.Name, p => FromJson(p.Value)),
        _ => null,
    };
}
