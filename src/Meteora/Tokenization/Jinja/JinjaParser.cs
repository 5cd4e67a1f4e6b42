namespace Meteora.Tokenization.Jinja;

/// <summary>
/// Parses the segments of <see cref="JinjaLexer"/> into statements, and tag bodies into expressions with Jinja's
/// precedence (lowest first): conditional <c>a if c else b</c>, <c>or</c>, <c>and</c>, <c>not</c>, comparisons
/// (<c>== != &lt; &gt; &lt;= &gt;= in, not in, is [not] test</c>), <c>~</c>, <c>+ -</c>, <c>* / // %</c>, <c>**</c>,
/// unary minus, then postfix (<c>.attr</c>, <c>[index]</c>, <c>[a:b]</c>, <c>(args)</c>, <c>| filter</c>).
/// Unsupported tags (<c>include</c>, <c>extends</c>, <c>block</c>, <c>call</c>, <c>filter</c> …) are a one-line error.
/// </summary>
internal sealed class JinjaParser
{
    private readonly List<Segment> _segments;
    private int _at;

    private JinjaParser(List<Segment> segments) => _segments = segments;

    public static IReadOnlyList<Node> Parse(string source)
    {
        var parser = new JinjaParser(JinjaLexer.Split(source));
        var body = parser.Block(out string? end);
        if (end is not null) throw new MeteoraException($"chat template line {parser.Line}: unexpected '{{% {end} %}}'");
        return body;
    }

    private int Line => _at < _segments.Count ? _segments[_at].Line : _segments.Count > 0 ? _segments[^1].Line : 1;

    // Statements until an end or intermediate tag (returned in `end`, e.g. "endif", "elif …", "else"), or the source's end.
    private List<Node> Block(out string? end, params string[] stops)
    {
        var nodes = new List<Node>();
        end = null;
        while (_at < _segments.Count)
        {
            var seg = _segments[_at++];
            switch (seg.Kind)
            {
                case SegmentKind.Text: nodes.Add(new TextNode(seg.Text, seg.Line)); break;
                case SegmentKind.Output: nodes.Add(new OutputNode(new ExprParser(JinjaLexer.Tokenize(seg.Text, seg.Line), seg.Line).ParseWhole(), seg.Line)); break;
                default:
                    // The keyword is the tag's first name ("if(x)" is "if" then "(x)", as jinja2 reads it).
                    string keyword = new string(seg.Text.TakeWhile(ch => char.IsLetterOrDigit(ch) || ch == '_').ToArray());
                    if (stops.Contains(keyword)) { end = seg.Text; return nodes; }
                    if (keyword.StartsWith("end") || keyword is "elif" or "else")
                        throw new MeteoraException($"chat template line {seg.Line}: unexpected '{{% {seg.Text} %}}'");
                    nodes.Add(Statement(keyword, seg));
                    break;
            }
        }
        if (stops.Length > 0) throw new MeteoraException($"chat template line {Line}: missing '{{% {stops[^1]} %}}'");
        return nodes;
    }

    private Node Statement(string keyword, Segment seg)
    {
        var tokens = JinjaLexer.Tokenize(seg.Text, seg.Line);
        var p = new ExprParser(tokens, seg.Line);
        p.Expect(TokenKind.Name, keyword);
        switch (keyword)
        {
            case "if":
            {
                var branches = new List<(Expr, IReadOnlyList<Node>)>();
                var condition = p.ParseWhole();
                while (true)
                {
                    var body = Block(out string? end, "elif", "else", "endif");
                    branches.Add((condition, body));
                    if (end!.StartsWith("elif") && (end.Length == 4 || !(char.IsLetterOrDigit(end[4]) || end[4] == '_')))
                    {
                        var ep = new ExprParser(JinjaLexer.Tokenize(end, Line), Line);
                        ep.Expect(TokenKind.Name, "elif");
                        condition = ep.ParseWhole();
                        continue;
                    }
                    if (end.Trim() == "else")
                    {
                        var elseBody = Block(out _, "endif");
                        return new IfNode(branches, elseBody, seg.Line);
                    }
                    return new IfNode(branches, null, seg.Line);
                }
            }
            case "for":
            {
                var targets = new List<string> { p.Expect(TokenKind.Name).Text };
                while (p.Accept(",")) targets.Add(p.Expect(TokenKind.Name).Text);
                p.Expect(TokenKind.Name, "in");
                var iterable = p.ParseNoConditional();
                Expr? filter = p.AcceptName("if") ? p.ParseNoConditional() : null;
                if (p.AcceptName("recursive")) throw p.Error("recursive loops are not supported");
                p.ExpectEnd();
                var body = Block(out string? end, "else", "endfor");
                var elseBody = end!.Trim() == "else" ? Block(out _, "endfor") : null;
                return new ForNode(targets, iterable, filter, body, elseBody, seg.Line);
            }
            case "set":
            {
                var targets = new List<string> { p.Expect(TokenKind.Name).Text };
                string? attribute = null;
                if (p.Accept(".")) attribute = p.Expect(TokenKind.Name).Text;
                else while (p.Accept(",")) targets.Add(p.Expect(TokenKind.Name).Text);
                if (p.AtEnd)
                {
                    var body = Block(out _, "endset");
                    return new SetNode(targets, attribute, null, body, seg.Line);
                }
                p.Expect(TokenKind.Operator, "=");
                return new SetNode(targets, attribute, p.ParseTupleWhole(), null, seg.Line);
            }
            case "break" or "continue":
                p.ExpectEnd();
                return new LoopControlNode(keyword == "break", seg.Line);
            case "macro":
            {
                string name = p.Expect(TokenKind.Name).Text;
                var parameters = new List<(string, Expr?)>();
                p.Expect(TokenKind.Operator, "(");
                while (!p.Accept(")"))
                {
                    string param = p.Expect(TokenKind.Name).Text;
                    parameters.Add((param, p.Accept("=") ? p.ParseNoConditional() : null));
                    if (!p.Accept(",")) { p.Expect(TokenKind.Operator, ")"); break; }
                }
                p.ExpectEnd();
                return new MacroNode(name, parameters, Block(out _, "endmacro"), seg.Line);
            }
            case "generation":                                               // transformers' assistant-mask marker: renders its body
            {
                p.ExpectEnd();
                var body = Block(out _, "endgeneration");
                return new IfNode([(new Literal(true, seg.Line), body)], null, seg.Line);
            }
            default:
                throw new MeteoraException($"chat template line {seg.Line}: the '{keyword}' tag is not supported");
        }
    }
}

/// <summary>A recursive-descent parser over one tag's tokens.</summary>
internal sealed class ExprParser(List<Token> tokens, int line)
{
    private int _at;

    private Token Peek => tokens[_at];
    public bool AtEnd => Peek.Kind == TokenKind.End;

    public MeteoraException Error(string what) => new($"chat template line {line}: {what}");

    public Token Expect(TokenKind kind, string? text = null)
    {
        var t = Peek;
        if (t.Kind != kind || (text is not null && t.Text != text))
            throw Error($"expected {(text is null ? kind.ToString().ToLowerInvariant() : $"'{text}'")}, found {(t.Kind == TokenKind.End ? "the end of the tag" : $"'{t.Text}'")}");
        _at++;
        return t;
    }

    public bool Accept(string op)
    {
        if (Peek.Kind != TokenKind.Operator || Peek.Text != op) return false;
        _at++;
        return true;
    }

    public bool AcceptName(string name)
    {
        if (Peek.Kind != TokenKind.Name || Peek.Text != name) return false;
        _at++;
        return true;
    }

    public void ExpectEnd()
    {
        if (!AtEnd) throw Error($"unexpected '{Peek.Text}'");
    }

    public Expr ParseWhole()
    {
        var e = ParseExpression();
        ExpectEnd();
        return e;
    }

    /// <summary>An expression or a bare tuple (<c>1, 2</c>, as in <c>{% set a, b = 1, 2 %}</c>), to the end of the tag.</summary>
    public Expr ParseTupleWhole()
    {
        var first = ParseExpression();
        if (!Accept(",")) { ExpectEnd(); return first; }
        var items = new List<Expr> { first };
        while (!AtEnd) { items.Add(ParseExpression()); if (!Accept(",")) break; }
        ExpectEnd();
        return new ListExpr(items, line);
    }

    public Expr ParseExpression()
    {
        var e = ParseNoConditional();
        if (!AcceptName("if")) return e;
        var condition = ParseOr();
        Expr? otherwise = AcceptName("else") ? ParseExpression() : null;
        return new Conditional(condition, e, otherwise, line);
    }

    public Expr ParseNoConditional() => ParseOr();

    private Expr ParseOr()
    {
        var e = ParseAnd();
        while (AcceptName("or")) e = new Binary("or", e, ParseAnd(), line);
        return e;
    }

    private Expr ParseAnd()
    {
        var e = ParseNot();
        while (AcceptName("and")) e = new Binary("and", e, ParseNot(), line);
        return e;
    }

    private Expr ParseNot() => AcceptName("not") ? new Unary("not", ParseNot(), line) : ParseCompare();

    // Comparisons chain as in Python: a < b < c is (a < b) and (b < c).
    private Expr ParseCompare()
    {
        var left = ParseAdditive();
        Expr? result = null;
        while (true)
        {
            string? op = null;
            if (Peek.Kind == TokenKind.Operator && Peek.Text is "==" or "!=" or "<" or ">" or "<=" or ">=") { op = Peek.Text; _at++; }
            else if (AcceptName("in")) op = "in";
            else if (Peek.Kind == TokenKind.Name && Peek.Text == "not" && tokens[_at + 1] is { Kind: TokenKind.Name, Text: "in" }) { _at += 2; op = "not in"; }
            if (op is null) return result ?? left;
            var right = ParseAdditive();
            var comparison = new Binary(op, left, right, line);
            result = result is null ? comparison : new Binary("and", result, comparison, line);
            left = right;
        }
    }

    // Jinja's order: + and - bind looser than ~, which binds looser than * / // %, then **.
    private Expr ParseAdditive() => LeftAssociative(ParseConcat, "+", "-");
    private Expr ParseConcat() => LeftAssociative(ParseMultiplicative, "~");
    private Expr ParseMultiplicative() => LeftAssociative(ParsePower, "*", "/", "//", "%");
    private Expr ParsePower() => LeftAssociative(() => ParseUnary(), "**");

    // operand (op operand)*, folded to the left: a - b - c is (a - b) - c.
    private Expr LeftAssociative(Func<Expr> operand, params string[] ops)
    {
        var e = operand();
        while (Peek.Kind == TokenKind.Operator && ops.Contains(Peek.Text))
        {
            string op = Peek.Text; _at++;
            e = new Binary(op, e, operand(), line);
        }
        return e;
    }

    // As jinja2's parse_unary: a sign applies to the operand before any filter or test, and filters and tests
    // (`| name`, `is [not] name`) apply to the whole unary expression: -x|abs is abs(-x).
    private Expr ParseUnary(bool withFilter = true)
    {
        Expr e;
        if (Accept("-")) e = new Unary("-", ParseUnary(withFilter: false), line);
        else if (Accept("+")) e = ParseUnary(withFilter: false);
        else e = ParsePostfix(ParsePrimary());
        return withFilter ? ParseFilterExpr(e) : e;
    }

    private Expr ParseFilterExpr(Expr e)
    {
        while (true)
        {
            if (Accept("|"))
            {
                string name = Expect(TokenKind.Name).Text;
                var args = new List<Expr>();
                var kwargs = new List<(string, Expr)>();
                if (Accept("(")) { args.AddRange(Arguments(out var kw)); kwargs.AddRange(kw); }
                e = new Filter(e, name, args, kwargs, line);
            }
            else if (AcceptName("is"))
            {
                bool negated = AcceptName("not");
                string name = Expect(TokenKind.Name).Text;
                var args = new List<Expr>();
                if (Accept("(")) { args.AddRange(Arguments(out var kw)); if (kw.Count > 0) throw Error($"test '{name}' takes no keyword arguments"); }
                else if (Peek.Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float
                         || Peek is { Kind: TokenKind.Operator, Text: "[" or "{" or "(" }
                         || Peek is { Kind: TokenKind.Name, Text: not ("and" or "or" or "else" or "if" or "is" or "in" or "not") })
                    args.Add(ParsePostfix(ParsePrimary()));                 // `x is divisibleby 3`, `x is sameas none`
                e = new Test(e, name, args, negated, line);
            }
            else if (Accept("(")) e = new Call(e, Arguments(out var kwargs), kwargs, line);
            else return e;
        }
    }

    private Expr ParsePostfix(Expr e)
    {
        while (true)
        {
            if (Accept("."))
            {
                var t = Peek;
                if (t.Kind is not (TokenKind.Name or TokenKind.Integer)) throw Error("expected an attribute name after '.'");
                _at++;
                e = t.Kind == TokenKind.Integer ? new Subscript(e, new Literal(t.Value, line), line) : new Attribute(e, t.Text, line);
            }
            else if (Accept("["))
            {
                Expr? start = Peek is { Kind: TokenKind.Operator, Text: ":" } ? null : ParseExpression();
                if (Accept(":"))
                {
                    Expr? stop = Peek is { Kind: TokenKind.Operator, Text: ":" or "]" } ? null : ParseExpression();
                    Expr? step = Accept(":") && Peek is not { Kind: TokenKind.Operator, Text: "]" } ? ParseExpression() : null;
                    Expect(TokenKind.Operator, "]");
                    e = new Slice(e, start, stop, step, line);
                }
                else
                {
                    Expect(TokenKind.Operator, "]");
                    e = new Subscript(e, start!, line);
                }
            }
            else if (Accept("("))
            {
                var args = Arguments(out var kwargs);
                e = new Call(e, args, kwargs, line);
            }
            else return e;
        }
    }

    // After '(' up to and including ')'.
    private List<Expr> Arguments(out List<(string Name, Expr Value)> kwargs)
    {
        var args = new List<Expr>();
        kwargs = [];
        while (!Accept(")"))
        {
            if (Peek.Kind == TokenKind.Name && tokens[_at + 1] is { Kind: TokenKind.Operator, Text: "=" })
            {
                string name = Peek.Text; _at += 2;
                kwargs.Add((name, ParseExpression()));
            }
            else args.Add(ParseExpression());
            if (!Accept(",")) { Expect(TokenKind.Operator, ")"); break; }
        }
        return args;
    }

    private Expr ParsePrimary()
    {
        var t = Peek;
        switch (t.Kind)
        {
            case TokenKind.String:
            {
                _at++;
                string s = (string)t.Value!;
                while (Peek.Kind == TokenKind.String) s += (string)tokens[_at++].Value!;   // adjacent literals concatenate
                return new Literal(s, line);
            }
            case TokenKind.Integer or TokenKind.Float: _at++; return new Literal(t.Value, line);
            case TokenKind.Name:
                _at++;
                return t.Text switch
                {
                    "true" or "True" => new Literal(true, line),
                    "false" or "False" => new Literal(false, line),
                    "none" or "None" => new Literal(null, line),
                    _ => new Variable(t.Text, line),
                };
            case TokenKind.Operator when t.Text == "(":
            {
                _at++;
                if (Accept(")")) return new ListExpr([], line);
                var first = ParseExpression();
                if (!Accept(",")) { Expect(TokenKind.Operator, ")"); return first; }
                var items = new List<Expr> { first };                       // a tuple: evaluated as a list
                while (!Accept(")")) { items.Add(ParseExpression()); if (!Accept(",")) { Expect(TokenKind.Operator, ")"); break; } }
                return new ListExpr(items, line);
            }
            case TokenKind.Operator when t.Text == "[":
            {
                _at++;
                var items = new List<Expr>();
                while (!Accept("]")) { items.Add(ParseExpression()); if (!Accept(",")) { Expect(TokenKind.Operator, "]"); break; } }
                return new ListExpr(items, line);
            }
            case TokenKind.Operator when t.Text == "{":
            {
                _at++;
                var items = new List<(Expr, Expr)>();
                while (!Accept("}"))
                {
                    var key = ParseExpression();
                    Expect(TokenKind.Operator, ":");
                    items.Add((key, ParseExpression()));
                    if (!Accept(",")) { Expect(TokenKind.Operator, "}"); break; }
                }
                return new DictExpr(items, line);
            }
            default:
                throw Error(t.Kind == TokenKind.End ? "expression expected, found the end of the tag" : $"unexpected '{t.Text}'");
        }
    }
}
