using System.Globalization;
using static Meteora.Tokenization.Jinja.JinjaValues;

namespace Meteora.Tokenization.Jinja;

/// <summary>
/// The filters (<c>x | trim</c>), tests (<c>x is defined</c>) and value methods (<c>s.strip()</c>,
/// <c>d.items()</c>) that chat templates use, with Jinja's and Python's behaviour. Anything else is a one-line error
/// naming it.
/// </summary>
internal static class JinjaFilters
{
    public delegate TemplateRenderException FaultFactory(string what);

    public static object? Apply(string name, object? v, List<object?> args, Dictionary<string, object?> kwargs, FaultFactory fault)
    {
        object? Arg(int i, string key, object? dflt) => i < args.Count ? args[i] : kwargs.TryGetValue(key, out var k) ? k : dflt;
        List<object?> Seq() => Items(v) ?? throw fault($"'{TypeName(v)}' object is not iterable (filter '{name}')");
        string S() => v is string s ? s : Str(v);
        switch (name)
        {
            case "trim": return Arg(0, "chars", null) is string chars ? S().Trim(chars.ToCharArray()) : PythonText.Strip(S());
            case "upper": return S().ToUpperInvariant();
            case "lower": return S().ToLowerInvariant();
            case "capitalize": { var s = S(); return s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant(); }
            case "title": return TitleFilter(S());
            case "length" or "count":
                return v switch { string s => (long)s.EnumerateRunes().Count(), Undefined => 0L, _ => (long)Seq().Count };
            case "string": return Str(v);
            case "int":
                return v switch
                {
                    long or bool => (long)ToDouble(v),
                    double d => (long)d,
                    string s when long.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long l) => l,
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) => (long)d,
                    _ => Arg(0, "default", 0L),
                };
            case "float":
                return v switch
                {
                    long or bool or double => ToDouble(v),
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) => d,
                    _ => Arg(0, "default", 0.0),
                };
            case "abs": return v switch { long l => (object)Math.Abs(l), double d => Math.Abs(d), _ => throw fault($"bad operand for abs(): '{TypeName(v)}'") };
            case "default" or "d":
            {
                bool boolean = Truthy(Arg(1, "boolean", false));
                return v is Undefined || (boolean && !Truthy(v)) ? Arg(0, "default_value", "") : v;
            }
            case "first": { var items = Seq(); return items.Count > 0 ? items[0] : Undefined.Instance; }
            case "last": { var items = Seq(); return items.Count > 0 ? items[^1] : Undefined.Instance; }
            case "list": return Seq().ToList();
            case "reverse": return v is string rs ? string.Concat(rs.EnumerateRunes().Reverse().Select(r => r.ToString())) : Enumerable.Reverse(Seq()).ToList();
            case "join":
            {
                string sep = Str(Arg(0, "d", ""));
                var items = Seq();
                if (Arg(1, "attribute", null) is string attr) items = items.Select(x => x is IDictionary<string, object?> m && m.TryGetValue(attr, out var a) ? a : Undefined.Instance).ToList();
                return string.Join(sep, items.Select(Str));
            }
            case "replace":
            {
                string s = S(), old = Str(Arg(0, "old", "")), @new = Str(Arg(1, "new", ""));
                long count = Arg(2, "count", null) is long c ? c : -1;
                return Replace(s, old, @new, count);
            }
            case "tojson":
            {
                // transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
                int? indent = Arg(1, "indent", null) is long n ? (int)n : null;
                (string, string)? seps = Arg(2, "separators", null) is List<object?> { Count: 2 } sp ? (Str(sp[0]), Str(sp[1])) : null;
                try { return Json(v, indent, Truthy(Arg(0, "ensure_ascii", false)), seps, Truthy(Arg(3, "sort_keys", false))); }
                catch (InvalidOperationException e) { throw fault($"tojson: {e.Message}"); }
            }
            case "items":
                return v is IDictionary<string, object?> m ? m.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList()
                    : v is Undefined ? new List<object?>() : throw fault($"'{TypeName(v)}' has no items (filter 'items')");
            case "indent":
            {
                int width = Arg(0, "width", 4L) is long w ? (int)w : Str(Arg(0, "width", "")).Length;
                string pad = Arg(0, "width", 4L) is string ps ? ps : new string(' ', width);
                bool first = Truthy(Arg(1, "first", false)), blank = Truthy(Arg(2, "blank", false));
                // jinja2: every line but the first (all with first=true) gets the prefix, empty ones only with blank=true.
                var lines = S().Split('\n');
                for (int i = 0; i < lines.Length; i++)
                    if (i == 0 ? first : blank || lines[i].Length > 0) lines[i] = pad + lines[i];
                return string.Join('\n', lines);
            }
            case "selectattr" or "rejectattr":
            {
                string attr = Str(Arg(0, "attribute", ""));
                bool keep = name == "selectattr";
                return new JinjaGenerator(Seq().Where(item =>
                {
                    var a = item is IDictionary<string, object?> m && m.TryGetValue(attr, out var x) ? x : Undefined.Instance;
                    bool pass = args.Count > 1 ? Test(Str(args[1]), a, args.Skip(2).ToList(), fault) : Truthy(a);
                    return pass == keep;
                }).ToList());
            }
            case "select" or "reject":
            {
                bool keep = name == "select";
                return new JinjaGenerator(Seq().Where(item => (args.Count > 0 ? Test(Str(args[0]), item, args.Skip(1).ToList(), fault) : Truthy(item)) == keep).ToList());
            }
            case "map":
            {
                if (kwargs.TryGetValue("attribute", out var attrName))
                {
                    string attr = Str(attrName);
                    var dflt = kwargs.TryGetValue("default", out var d) ? d : Undefined.Instance;
                    return new JinjaGenerator(Seq().Select(item => item is IDictionary<string, object?> m && m.TryGetValue(attr, out var x) ? x : dflt).ToList());
                }
                if (args.Count == 0) throw fault("map needs a filter name or attribute=");
                string filter = Str(args[0]);
                return new JinjaGenerator(Seq().Select(item => Apply(filter, item, args.Skip(1).ToList(), [], fault)).ToList());
            }
            case "unique":
            {
                bool caseSensitive = Truthy(Arg(0, "case_sensitive", false));             // jinja2 ignores case by default
                object? Key(object? x) => !caseSensitive && x is string t ? t.ToLowerInvariant() : x;
                var seen = new List<object?>();
                var result = new List<object?>();
                foreach (var item in Seq())
                    if (!seen.Any(s => PyEquals(s, Key(item)))) { seen.Add(Key(item)); result.Add(item); }
                return new JinjaGenerator(result);
            }
            case "sort":
            {
                bool reverse = Truthy(Arg(0, "reverse", false)), caseSensitive = Truthy(Arg(1, "case_sensitive", false));
                string? attr = Arg(2, "attribute", null) as string;
                object? Key(object? x)
                {
                    var k = attr is not null && x is IDictionary<string, object?> m && m.TryGetValue(attr, out var a) ? a : x;
                    return !caseSensitive && k is string t ? t.ToLowerInvariant() : k;
                }
                var comparer = Comparer<object?>.Create((a, b) => a is string sa && b is string sb ? string.CompareOrdinal(sa, sb) : ToDouble(a).CompareTo(ToDouble(b)));
                return reverse ? Seq().OrderByDescending(Key, comparer).ToList() : Seq().OrderBy(Key, comparer).ToList();   // stable, as Python's sort
            }
            case "dictsort":
                return v is IDictionary<string, object?> dm
                    ? dm.OrderBy(kv => kv.Key, StringComparer.OrdinalIgnoreCase).Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList()
                    : throw fault("dictsort needs a mapping");
            case "safe" or "e" or "escape" or "forceescape": return name == "safe" ? v : S();   // no autoescaping for chat prompts
            case "wordcount": return (long)S().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
            case "center":
            {
                string s = S();
                int width = Arg(0, "width", 80L) is long w ? (int)w : 80;
                if (s.Length >= width) return s;
                int margin = width - s.Length, left = margin / 2 + (margin & width & 1);          // CPython's str.center split
                return new string(' ', left) + s + new string(' ', margin - left);
            }
            case "round":
            {
                int precision = Arg(0, "precision", 0L) is long p ? (int)p : 0;
                return Math.Round(ToDouble(v), precision, MidpointRounding.ToEven);
            }
            case "batch" or "slice" or "groupby" or "sum" or "min" or "max" or "xmlattr" or "urlize" or "filesizeformat" or "format" or "pprint" or "striptags" or "truncate" or "wordwrap" or "random" or "attr":
                if (name == "sum") return Seq().Aggregate((object?)0L, (a, b) => a is long x && b is long y ? (object)(x + y) : ToDouble(a) + ToDouble(b));
                if (name is "min" or "max")
                {
                    var items = Seq();
                    if (items.Count == 0) return Undefined.Instance;
                    return name == "min" ? items.MinBy(x => x is string ? 0 : ToDouble(x)) : items.MaxBy(x => x is string ? 0 : ToDouble(x));
                }
                throw fault($"the '{name}' filter is not supported");
            default: throw fault($"no filter named '{name}'");
        }
    }

    public static bool Test(string name, object? v, List<object?> args, FaultFactory fault) => name switch
    {
        "defined" => v is not Undefined,
        "undefined" => v is Undefined,
        "none" => v is null,
        "string" => v is string,
        "number" => v is long or double or bool,
        "integer" => v is long,
        "float" => v is double,
        "boolean" => v is bool,
        "true" => v is true,
        "false" => v is false,
        "mapping" => v is IDictionary<string, object?>,
        "iterable" => v is string or List<object?> or IDictionary<string, object?>,
        "sequence" => v is string or List<object?> or IDictionary<string, object?>,
        "callable" => v is JinjaFunction,
        "even" => v is long e && e % 2 == 0,
        "odd" => v is long o && o % 2 != 0,
        "divisibleby" => v is long n && args.Count > 0 && args[0] is long m && m != 0 && n % m == 0,
        "lower" => v is string s && s == s.ToLowerInvariant(),
        "upper" => v is string u && u == u.ToUpperInvariant(),
        "equalto" or "eq" or "==" => args.Count > 0 && PyEquals(v, args[0]),
        "sameas" => args.Count > 0 && (v, args[0]) switch                    // identity: None, True, False are singletons
        {
            (null, null) => true,
            (bool a, bool b) => a == b,
            (string a, string b) => ReferenceEquals(a, b),
            (long a, long b) => a == b && a is >= -5 and <= 256,                // CPython's small-int cache
            _ => ReferenceEquals(v, args[0]),
        },
        "ne" or "!=" => args.Count > 0 && !PyEquals(v, args[0]),
        "in" => args.Count > 0 && (args[0] switch
        {
            List<object?> l => l.Any(x => PyEquals(x, v)),
            string s when v is string sub => s.Contains(sub, StringComparison.Ordinal),
            IDictionary<string, object?> m => v is string k && m.ContainsKey(k),
            _ => false,
        }),
        "gt" or ">" => args.Count > 0 && IsNumber(v) && IsNumber(args[0]) && ToDouble(v) > ToDouble(args[0]),
        "ge" or ">=" => args.Count > 0 && IsNumber(v) && IsNumber(args[0]) && ToDouble(v) >= ToDouble(args[0]),
        "lt" or "<" => args.Count > 0 && IsNumber(v) && IsNumber(args[0]) && ToDouble(v) < ToDouble(args[0]),
        "le" or "<=" => args.Count > 0 && IsNumber(v) && IsNumber(args[0]) && ToDouble(v) <= ToDouble(args[0]),
        _ => throw fault($"no test named '{name}'"),
    };

    private static readonly HashSet<string> StringMethods = ["strip", "lstrip", "rstrip", "upper", "lower", "title", "capitalize", "startswith",
        "endswith", "split", "rsplit", "replace", "find", "rfind", "count", "join", "splitlines", "isdigit", "isalpha", "isspace"];
    private static readonly HashSet<string> DictMethods = ["items", "keys", "values", "get"];

    public static bool IsMethod(object? target, string name) => target switch
    {
        string => StringMethods.Contains(name),
        IDictionary<string, object?> => DictMethods.Contains(name),
        _ => false,
    };

    public static object? CallMethod(object? target, string name, List<object?> a, Dictionary<string, object?> kw, FaultFactory fault)
    {
        object? Arg(int i, string key, object? dflt) => i < a.Count ? a[i] : kw.TryGetValue(key, out var k) ? k : dflt;
        if (target is IDictionary<string, object?> m)
            return name switch
            {
                "items" => m.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList(),
                "keys" => m.Keys.Cast<object?>().ToList(),
                "values" => m.Values.ToList(),
                "get" => Arg(0, "key", null) is string k && m.TryGetValue(k, out var v) ? v : Arg(1, "default", null),
                _ => throw fault($"dict has no method '{name}'"),
            };
        string s = (string)target!;
        string? chars = Arg(0, "chars", null) as string;
        switch (name)
        {
            case "strip": return chars is null ? PythonText.Strip(s) : s.Trim(chars.ToCharArray());
            case "lstrip": return chars is null ? PythonText.Strip(s, right: false) : s.TrimStart(chars.ToCharArray());
            case "rstrip": return chars is null ? PythonText.Strip(s, left: false) : s.TrimEnd(chars.ToCharArray());
            case "upper": return s.ToUpperInvariant();
            case "lower": return s.ToLowerInvariant();
            case "title": return Title(s);
            case "capitalize": return s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();
            case "startswith" or "endswith":
            {
                var prefixes = a.Count > 0 && a[0] is List<object?> tuple ? tuple.Select(Str).ToList() : [Str(Arg(0, "prefix", ""))];
                return prefixes.Any(p => name == "startswith" ? s.StartsWith(p, StringComparison.Ordinal) : s.EndsWith(p, StringComparison.Ordinal));
            }
            case "split" or "rsplit":
            {
                var sep = Arg(0, "sep", null) as string;
                long max = Arg(1, "maxsplit", -1L) is long mx ? mx : -1;
                if (sep is null)
                {
                    var words = PythonText.Split(s);
                    if (max < 0 || words.Length <= max + 1) return words.Cast<object?>().ToList();
                    // split(None, n): n splits from the left, the rest kept whole (its leading whitespace stripped)
                    var head = new List<object?>();
                    int at = 0;
                    for (int k = 0; k < max; k++)
                    {
                        while (at < s.Length && PythonText.IsSpace(s[at])) at++;
                        int start = at;
                        while (at < s.Length && !PythonText.IsSpace(s[at])) at++;
                        head.Add(s[start..at]);
                    }
                    while (at < s.Length && PythonText.IsSpace(s[at])) at++;
                    string rest = s[at..];
                    head.Add(rest);
                    return name == "split" ? head : PythonText.Split(s).Cast<object?>().ToList();
                }
                if (sep.Length == 0) throw fault("empty separator");
                var parts = max < 0 ? s.Split(sep) : name == "split" ? s.Split(sep, (int)max + 1) : RSplit(s, sep, (int)max);
                return parts.Cast<object?>().ToList();
            }
            case "splitlines": return s.Split('\n').Select(l => (object?)l.TrimEnd('\r')).Take(s.EndsWith('\n') ? s.Split('\n').Length - 1 : int.MaxValue).ToList();
            case "replace": return Replace(s, Str(Arg(0, "old", "")), Str(Arg(1, "new", "")), Arg(2, "count", -1L) is long c ? c : -1);
            case "find": return (long)s.IndexOf(Str(Arg(0, "sub", "")), StringComparison.Ordinal);
            case "rfind": return (long)s.LastIndexOf(Str(Arg(0, "sub", "")), StringComparison.Ordinal);
            case "count": { string sub = Str(Arg(0, "sub", "")); return sub.Length == 0 ? (long)s.Length + 1 : (long)((s.Length - s.Replace(sub, "").Length) / sub.Length); }
            case "join": return string.Join(s, (Items(Arg(0, "iterable", null)) ?? []).Select(Str));
            case "isdigit": return s.Length > 0 && s.All(char.IsDigit);
            case "isalpha": return s.Length > 0 && s.All(char.IsLetter);
            case "isspace": return s.Length > 0 && s.All(char.IsWhiteSpace);
            default: throw fault($"str has no method '{name}'");
        }
    }

    private static string[] RSplit(string s, string sep, int max)
    {
        var parts = new List<string>();
        int end = s.Length;
        while (parts.Count < max)
        {
            int at = s.LastIndexOf(sep, end - 1 < 0 ? 0 : end - 1, StringComparison.Ordinal);
            if (at < 0 || end == 0) break;
            parts.Insert(0, s[(at + sep.Length)..end]);
            end = at;
        }
        parts.Insert(0, s[..end]);
        return [.. parts];
    }

    private static string Replace(string s, string old, string @new, long count)
    {
        if (count < 0) return old.Length == 0 ? string.Join(@new, s.EnumerateRunes().Select(r => r.ToString()).Prepend("").Append("")) : s.Replace(old, @new, StringComparison.Ordinal);
        var sb = new System.Text.StringBuilder();
        int at = 0;
        for (long n = 0; n < count; n++)
        {
            int i = s.IndexOf(old, at, StringComparison.Ordinal);
            if (i < 0 || old.Length == 0) break;
            sb.Append(s, at, i - at).Append(@new);
            at = i + old.Length;
        }
        return sb.Append(s, at, s.Length - at).ToString();
    }

    // jinja2's title filter: the first letter of each run after whitespace, '-', '(', '{', '[' or '<' upper-cased,
    // the rest lower-cased (str.title, the method, also restarts after apostrophes and digits).
    private static string TitleFilter(string s)
    {
        var chars = s.ToCharArray();
        bool start = true;
        for (int i = 0; i < chars.Length; i++)
        {
            char c = chars[i];
            if (char.IsWhiteSpace(c) || c is '-' or '(' or '{' or '[' or '<') { start = true; continue; }
            chars[i] = start ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c);
            start = false;
        }
        return new string(chars);
    }

    private static string Title(string s)
    {
        var chars = s.ToCharArray();
        bool start = true;
        for (int i = 0; i < chars.Length; i++)
        {
            if (char.IsLetter(chars[i])) { chars[i] = start ? char.ToUpperInvariant(chars[i]) : char.ToLowerInvariant(chars[i]); start = false; }
            else start = true;
        }
        return new string(chars);
    }
}
