using System.Globalization;
using System.Text;
using static Meteora.Tokenization.Jinja.JinjaValues;

namespace Meteora.Tokenization.Jinja;

/// <summary>
/// Renders a parsed template: statements append to the output, expressions evaluate with Python's semantics
/// (<see cref="JinjaValues"/>). Scopes follow Jinja: a <c>for</c> body and a macro call have their own, so a
/// <c>set</c> inside a loop does not leak out (templates carry state across iterations in a <c>namespace</c>).
/// </summary>
internal sealed class JinjaInterpreter
{
    private sealed class Scope(Scope? parent)
    {
        private readonly Dictionary<string, object?> _vars = new();
        public Scope? Parent => parent;
        public void Set(string name, object? value) => _vars[name] = value;
        public bool TryGet(string name, out object? value)
        {
            for (var s = this; s is not null; s = s.Parent)
                if (s._vars.TryGetValue(name, out value)) return true;
            value = null;
            return false;
        }
    }

    private sealed class LoopSignal(bool isBreak) : Exception { public bool IsBreak { get; } = isBreak; }

    private sealed record Macro(MacroNode Node, Scope Defined);

    private readonly StringBuilder _out = new();
    private Scope _scope;
    private int _line;

    private JinjaInterpreter(IReadOnlyDictionary<string, object?> context)
    {
        var globals = new Scope(null);
        globals.Set("raise_exception", new JinjaFunction("raise_exception", (a, _) =>
            throw new TemplateRenderException($"chat template line {_line}: {(a.Count > 0 ? Str(a[0]) : "raise_exception")}", raised: true)));
        globals.Set("namespace", new JinjaFunction("namespace", (a, kw) =>
        {
            var ns = new JinjaNamespace();
            if (a.Count > 0 && a[0] is IDictionary<string, object?> init) foreach (var (k, v) in init) ns[k] = v;
            foreach (var (k, v) in kw) ns[k] = v;
            return ns;
        }));
        globals.Set("range", new JinjaFunction("range", (a, _) =>
        {
            long start = 0, stop, step = 1;
            if (a.Count == 1) stop = Int(a[0]);
            else { start = Int(a[0]); stop = Int(a[1]); if (a.Count > 2) step = Int(a[2]); }
            if (step == 0) throw Fault("range() step must not be zero");
            var list = new List<object?>();
            for (long i = start; step > 0 ? i < stop : i > stop; i += step) list.Add(i);
            return list;
        }));
        globals.Set("strftime_now", new JinjaFunction("strftime_now", (a, _) => Strftime(DateTime.Now, a.Count > 0 ? Str(a[0]) : "%Y-%m-%d")));
        globals.Set("dict", new JinjaFunction("dict", (a, kw) => new Dictionary<string, object?>(kw)));
        _scope = new Scope(globals);
        foreach (var (k, v) in context) _scope.Set(k, From(v));
    }

    public static string Render(IReadOnlyList<Node> template, IReadOnlyDictionary<string, object?> context)
    {
        var interpreter = new JinjaInterpreter(context);
        try
        {
            interpreter.Run(template);
        }
        catch (LoopSignal)
        {
            throw new TemplateRenderException("chat template: break or continue outside a loop", raised: false);
        }
        catch (Exception e) when (e is InvalidCastException or InvalidOperationException or ArgumentException or FormatException or OverflowException)
        {
            // A type the template's operation does not take (sorting mixed values, a number out of range …): a template
            // fault on this input, reported like the others, never an unexpected crash of the caller.
            throw new TemplateRenderException($"chat template line {interpreter._line}: {e.Message}", raised: false);
        }
        return interpreter._out.ToString();
    }

    private TemplateRenderException Fault(string what) => new($"chat template line {_line}: {what}", raised: false);

    private void Run(IReadOnlyList<Node> nodes)
    {
        foreach (var node in nodes)
        {
            _line = node.Line;
            switch (node)
            {
                case TextNode t: _out.Append(t.Text); break;
                case OutputNode o: _out.Append(Str(Eval(o.Value))); break;
                case IfNode f:
                {
                    var branch = f.Branches.FirstOrDefault(b => Truthy(Eval(b.Condition)));
                    if (branch.Body is not null) Run(branch.Body);
                    else if (f.Else is not null) Run(f.Else);
                    break;
                }
                case ForNode f: For(f); break;
                case SetNode s: Set(s); break;
                case LoopControlNode c: throw new LoopSignal(c.Break);
                case MacroNode m: _scope.Set(m.Name, new Macro(m, _scope)); break;
            }
        }
    }

    private void For(ForNode f)
    {
        var source = Eval(f.Iterable);
        var items = Items(source) ?? throw Fault($"'{TypeName(source)}' object is not iterable");
        var outer = _scope;
        try
        {
            // The filter (`for x in xs if cond`) is applied first: loop.index and loop.length count the kept items.
            if (f.Filter is not null)
                items = items.Where(item => { _scope = new Scope(outer); Bind(f.Targets, item); return Truthy(Eval(f.Filter)); }).ToList();
            for (int i = 0; i < items.Count; i++)
            {
                _scope = new Scope(outer);                                   // every iteration starts afresh, as in jinja2
                Bind(f.Targets, items[i]);
                _scope.Set("loop", new Dictionary<string, object?>
                {
                    ["index"] = (long)(i + 1), ["index0"] = (long)i, ["revindex"] = (long)(items.Count - i), ["revindex0"] = (long)(items.Count - i - 1),
                    ["first"] = i == 0, ["last"] = i == items.Count - 1, ["length"] = (long)items.Count,
                    ["previtem"] = i > 0 ? items[i - 1] : Undefined.Instance, ["nextitem"] = i + 1 < items.Count ? items[i + 1] : Undefined.Instance,
                });
                try { Run(f.Body); }
                catch (LoopSignal signal) { if (signal.IsBreak) break; }
            }
        }
        finally
        {
            _scope = outer;
        }
        if (items.Count == 0 && f.Else is not null) Run(f.Else);
    }

    private void Bind(IReadOnlyList<string> targets, object? item)
    {
        if (targets.Count == 1) { _scope.Set(targets[0], item); return; }
        var parts = Items(item);
        if (parts is null || parts.Count != targets.Count) throw Fault($"cannot unpack {TypeName(item)} into {targets.Count} names");
        for (int i = 0; i < targets.Count; i++) _scope.Set(targets[i], parts[i]);
    }

    private void Set(SetNode s)
    {
        object? value;
        if (s.Body is not null)
        {
            int mark = _out.Length;
            Run(s.Body);
            value = _out.ToString(mark, _out.Length - mark);
            _out.Length = mark;
        }
        else value = Eval(s.Value!);
        if (s.Attribute is not null)
        {
            if (!_scope.TryGet(s.Targets[0], out var target) || target is not JinjaNamespace ns)
                throw Fault($"cannot assign attribute '{s.Attribute}' of '{s.Targets[0]}': only a namespace() takes attributes");
            ns[s.Attribute] = value;
        }
        else Bind(s.Targets, value);
    }

    private object? Eval(Expr e)
    {
        switch (e)
        {
            case Literal l: return l.Value;
            case Variable v: return _scope.TryGet(v.Name, out var value) ? value : Undefined.Instance;
            case ListExpr l: return l.Items.Select(Eval).ToList();
            case DictExpr d:
            {
                var m = new Dictionary<string, object?>();
                foreach (var (k, v) in d.Items) m[Str(Eval(k))] = Eval(v);
                return m;
            }
            case Attribute a: return GetAttribute(Eval(a.Target), a.Name);
            case Subscript s: return GetItem(Eval(s.Target), Eval(s.Index));
            case Slice s: return SliceOf(Eval(s.Target), s.Start is null ? null : Eval(s.Start), s.Stop is null ? null : Eval(s.Stop), s.Step is null ? null : Eval(s.Step));
            case Call c: return CallExpr(c);
            case Filter f: return JinjaFilters.Apply(f.Name, Eval(f.Value), f.Args.Select(Eval).ToList(), f.Kwargs.ToDictionary(k => k.Name, k => Eval(k.Value)), Fault);
            case Test t: return JinjaFilters.Test(t.Name, Eval(t.Value), t.Args.Select(Eval).ToList(), Fault) != t.Negated;
            case Unary { Op: "not" } u: return !Truthy(Eval(u.Operand));
            case Unary u:
            {
                var v = Eval(u.Operand);
                return v switch { long l => (object)(-l), double d => -d, bool b => -(b ? 1L : 0L), _ => throw Fault($"bad operand type for unary -: '{TypeName(v)}'") };
            }
            case Binary { Op: "and" } b: { var l = Eval(b.Left); return Truthy(l) ? Eval(b.Right) : l; }
            case Binary { Op: "or" } b: { var l = Eval(b.Left); return Truthy(l) ? l : Eval(b.Right); }
            case Binary b: return BinaryOp(b.Op, Eval(b.Left), Eval(b.Right));
            case Conditional c: return Truthy(Eval(c.Condition)) ? Eval(c.Then) : c.Else is null ? Undefined.Instance : Eval(c.Else);
            default: throw Fault($"cannot evaluate {e.GetType().Name}");
        }
    }

    private object? GetAttribute(object? target, string name)
    {
        switch (target)
        {
            case Undefined: throw Fault($"'{name}' of an undefined value");
            case JinjaNamespace ns: return ns.TryGetValue(name, out var nv) ? nv : Undefined.Instance;
            case IDictionary<string, object?> m:
                if (m is not JinjaNamespace && JinjaFilters.IsMethod(target, name)) return new JinjaFunction(name, (a, kw) => JinjaFilters.CallMethod(target, name, a, kw, Fault));
                return m.TryGetValue(name, out var v) ? v : Undefined.Instance;
            default:
                return JinjaFilters.IsMethod(target, name)
                    ? new JinjaFunction(name, (a, kw) => JinjaFilters.CallMethod(target, name, a, kw, Fault))
                    : Undefined.Instance;
        }
    }

    private object? GetItem(object? target, object? index)
    {
        switch (target)
        {
            case Undefined: throw Fault($"{Repr(index)} of an undefined value");
            case IDictionary<string, object?> m:
                return index is string key && m.TryGetValue(key, out var v) ? v
                    : index is string name && JinjaFilters.IsMethod(target, name) ? GetAttribute(target, name) : Undefined.Instance;
            case List<object?> or string when index is long or bool:
            {
                var items = Items(target)!;                                // a string indexes its characters
                long i = Int(index);
                if (i < 0) i += items.Count;
                return i >= 0 && i < items.Count ? items[(int)i] : Undefined.Instance;
            }
            default:
                return index is string attr ? GetAttribute(target, attr) : Undefined.Instance;
        }
    }

    private object? SliceOf(object? target, object? start, object? stop, object? step)
    {
        long st = step is null ? 1 : Int(step);
        if (st == 0) throw Fault("slice step cannot be zero");
        var items = target is List<object?> or string ? Items(target)! : throw Fault($"'{TypeName(target)}' object is not subscriptable");
        int n = items.Count;
        long Norm(object? v, long dflt) { if (v is null) return dflt; long i = Int(v); if (i < 0) i += n; return i; }
        var picked = new List<object?>();
        if (st > 0)
        {
            long a = Math.Clamp(Norm(start, 0), 0, n), b = Math.Clamp(Norm(stop, n), 0, n);
            for (long i = a; i < b; i += st) picked.Add(items[(int)i]);
        }
        else
        {
            long a = Math.Clamp(Norm(start, n - 1), -1, n - 1), b = Math.Clamp(Norm(stop, -1), -1, n - 1);
            if (stop is null) b = -1;
            for (long i = a; i > b; i += st) picked.Add(items[(int)i]);
        }
        return target is string ? string.Concat(picked.Cast<string>()) : picked;
    }

    private object? CallExpr(Call c)
    {
        var callee = Eval(c.Callee);
        var args = c.Args.Select(Eval).ToList();
        var kwargs = c.Kwargs.ToDictionary(k => k.Name, k => Eval(k.Value));
        if (callee is Undefined)
            throw Fault($"'{(c.Callee is Variable v ? v.Name : c.Callee is Attribute a ? a.Name : "value")}' is undefined and cannot be called");
        return CallValue(callee, args, kwargs);
    }

    private object? CallValue(object? callee, List<object?> args, Dictionary<string, object?> kwargs)
    {
        switch (callee)
        {
            case JinjaFunction f: return f.Invoke(args, kwargs);
            case Macro m:
            {
                var outer = _scope;
                _scope = new Scope(m.Defined);
                int mark = _out.Length;
                try
                {
                    for (int i = 0; i < m.Node.Parameters.Count; i++)
                    {
                        var (name, dflt) = m.Node.Parameters[i];
                        _scope.Set(name, i < args.Count ? args[i] : kwargs.TryGetValue(name, out var kv) ? kv : dflt is null ? Undefined.Instance : Eval(dflt));
                    }
                    Run(m.Node.Body);
                    return _out.ToString(mark, _out.Length - mark);
                }
                finally
                {
                    _out.Length = mark;
                    _scope = outer;
                }
            }
            default: throw Fault($"'{TypeName(callee)}' object is not callable");
        }
    }

    private object? BinaryOp(string op, object? l, object? r)
    {
        switch (op)
        {
            case "~": return Str(l) + Str(r);
            case "==": return PyEquals(l, r);
            case "!=": return !PyEquals(l, r);
            case "in": return Contains(r, l);
            case "not in": return !Contains(r, l);
            case "<" or ">" or "<=" or ">=":
            {
                int cmp = (l, r) switch
                {
                    (string a, string b) => string.CompareOrdinal(a, b),
                    _ when IsNumber(l) && IsNumber(r) => ToDouble(l).CompareTo(ToDouble(r)),
                    _ => throw Fault($"'{op}' not supported between '{TypeName(l)}' and '{TypeName(r)}'"),
                };
                return op switch { "<" => cmp < 0, ">" => cmp > 0, "<=" => cmp <= 0, _ => cmp >= 0 };
            }
            case "+":
                return (l, r) switch
                {
                    (string a, string b) => a + b,
                    (List<object?> a, List<object?> b) => a.Concat(b).ToList(),
                    _ when IsNumber(l) && IsNumber(r) => Arith(op, l, r),
                    _ => throw Fault($"unsupported operand types for +: '{TypeName(l)}' and '{TypeName(r)}'"),
                };
            case "*" when l is string s && r is long or bool:
                return string.Concat(Enumerable.Repeat(s, (int)Math.Max(0, Int(r))));
            case "*" when r is string s2 && l is long or bool:
                return string.Concat(Enumerable.Repeat(s2, (int)Math.Max(0, Int(l))));
            case "*" when l is List<object?> list && r is long or bool:
                return Enumerable.Repeat(list, (int)Math.Max(0, Int(r))).SelectMany(x => x).ToList();
            default:
                if (IsNumber(l) && IsNumber(r)) return Arith(op, l, r);
                throw Fault($"unsupported operand types for {op}: '{TypeName(l)}' and '{TypeName(r)}'");
        }
    }

    private object? Arith(string op, object? l, object? r)
    {
        bool ints = l is long or bool && r is long or bool;
        if (op == "/") { double d = ToDouble(r); if (d == 0) throw Fault("division by zero"); return ToDouble(l) / d; }
        if (ints)
        {
            long a = Int(l), b = Int(r);
            switch (op)
            {
                case "+": return a + b;
                case "-": return a - b;
                case "*": return a * b;
                case "//": if (b == 0) throw Fault("integer division by zero"); return (long)Math.Floor((double)a / b);
                case "%": if (b == 0) throw Fault("integer modulo by zero"); return ((a % b) + b) % b;
                case "**": return b >= 0 ? (object)(long)Math.Pow(a, b) : Math.Pow(a, b);
            }
        }
        double x = ToDouble(l), y = ToDouble(r);
        return op switch
        {
            "+" => x + y, "-" => x - y, "*" => x * y,
            "//" => y == 0 ? throw Fault("float floor division by zero") : Math.Floor(x / y),
            "%" => y == 0 ? throw Fault("float modulo") : x - y * Math.Floor(x / y),
            "**" => Math.Pow(x, y),
            _ => throw Fault($"unknown operator {op}"),
        };
    }

    private bool Contains(object? container, object? item) => container switch
    {
        string s when item is string sub => s.Contains(sub, StringComparison.Ordinal),
        string => throw Fault($"'in <string>' requires string as left operand, not {TypeName(item)}"),
        List<object?> list => list.Any(x => PyEquals(x, item)),
        IDictionary<string, object?> m => item is string k && m.ContainsKey(k),
        Undefined => false,
        _ => throw Fault($"argument of type '{TypeName(container)}' is not iterable"),
    };

    private long Int(object? v) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        double d => (long)d,
        _ => throw Fault($"an integer is required, not '{TypeName(v)}'"),
    };

    // The strftime directives chat templates use for "today's date".
    private static string Strftime(DateTime t, string format)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length) { sb.Append(format[i]); continue; }
            char d = format[++i];
            sb.Append(d switch
            {
                'Y' => t.ToString("yyyy", CultureInfo.InvariantCulture), 'm' => t.ToString("MM", CultureInfo.InvariantCulture),
                'd' => t.ToString("dd", CultureInfo.InvariantCulture), 'B' => t.ToString("MMMM", CultureInfo.InvariantCulture),
                'b' => t.ToString("MMM", CultureInfo.InvariantCulture), 'H' => t.ToString("HH", CultureInfo.InvariantCulture),
                'M' => t.ToString("mm", CultureInfo.InvariantCulture), 'S' => t.ToString("ss", CultureInfo.InvariantCulture),
                'A' => t.ToString("dddd", CultureInfo.InvariantCulture), 'a' => t.ToString("ddd", CultureInfo.InvariantCulture),
                'y' => t.ToString("yy", CultureInfo.InvariantCulture), '%' => "%",
                _ => "%" + d,
            });
        }
        return sb.ToString();
    }
}
