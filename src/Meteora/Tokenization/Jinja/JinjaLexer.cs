using System.Globalization;
using System.Text;

namespace Meteora.Tokenization.Jinja;

/// <summary>A piece of template source: literal text, an output tag <c>{{ … }}</c> or a statement tag <c>{% … %}</c>.</summary>
internal sealed record Segment(SegmentKind Kind, string Text, int Line);

internal enum SegmentKind { Text, Output, Statement }

/// <summary>A token inside a tag: a name, a string or number literal, or an operator.</summary>
internal sealed record Token(TokenKind Kind, string Text, object? Value = null);

internal enum TokenKind { Name, String, Integer, Float, Operator, End }

/// <summary>
/// Splits a Jinja template into text and tags with the whitespace rules Hugging Face renders chat templates with
/// (<c>trim_blocks</c> and <c>lstrip_blocks</c> on, as in transformers' <c>_compile_jinja_template</c>): a statement
/// or comment tag alone on its line takes the line's leading spaces and its own newline with it; <c>-</c> inside a
/// delimiter strips all whitespace on that side, <c>+</c> keeps the line's leading spaces.
/// </summary>
internal static class JinjaLexer
{
    public static List<Segment> Split(string source)
    {
        // As jinja2 reads a template: \r\n and \r become \n, and one trailing newline is dropped (keep_trailing_newline
        // is off), so a chat_template.jinja file's final newline does not end up after the generation prompt.
        source = source.Replace("\r\n", "\n").Replace('\r', '\n');
        if (source.EndsWith('\n')) source = source[..^1];
        var segments = new List<Segment>();
        var text = new StringBuilder();
        int i = 0, line = 1;
        bool stripNextLeading = false, trimNextNewline = false;
        while (i < source.Length)
        {
            int open = NextOpen(source, i);
            string chunk = open < 0 ? source[i..] : source[i..open];
            // Whether the previous tag's end took a newline with it: then this chunk starts a line (jinja2's
            // line_starting), which lets lstrip_blocks strip a tag indented on that line.
            bool lineStart = i == 0;
            if (stripNextLeading)
            {
                string kept = chunk.TrimStart();
                lineStart = chunk.Length > kept.Length && chunk[chunk.Length - kept.Length - 1] == '\n';
                chunk = kept;
            }
            else if (trimNextNewline && chunk.StartsWith('\n')) { chunk = chunk[1..]; lineStart = true; }
            stripNextLeading = trimNextNewline = false;
            if (open < 0) { text.Append(chunk); break; }

            char kind = source[open + 1];                                        // '{', '%' or '#'
            int inner = open + 2;
            char modifier = inner < source.Length ? source[inner] : '\0';
            if (modifier == '-') { chunk = chunk.TrimEnd(); inner++; }
            else if (modifier == '+') inner++;
            else if (kind != '{') chunk = LstripBlock(chunk, lineStart);
            text.Append(chunk);
            line += Count(source, i, open, '\n');

            string close = kind switch { '{' => "}}", '%' => "%}", _ => "#}" };
            int end = kind == '#' ? source.IndexOf(close, inner, StringComparison.Ordinal) : CloseOutsideStrings(source, inner, close);
            if (end < 0) throw new MeteoraException($"chat template line {line}: '{source.Substring(open, 2)}' is never closed");
            int bodyEnd = end;
            if (end > inner && source[end - 1] == '-') { stripNextLeading = true; bodyEnd--; }
            else if (end > inner && source[end - 1] == '+' && kind != '{') bodyEnd--;      // "+%}": keep the newline after it
            else if (kind != '{') trimNextNewline = true;
            string body = source[inner..bodyEnd];

            if (kind != '#')
            {
                if (text.Length > 0) { segments.Add(new Segment(SegmentKind.Text, text.ToString(), line)); text.Clear(); }
                segments.Add(new Segment(kind == '{' ? SegmentKind.Output : SegmentKind.Statement, body.Trim(), line));
            }
            line += Count(source, open, end, '\n');
            i = end + 2;
        }
        if (text.Length > 0) segments.Add(new Segment(SegmentKind.Text, text.ToString(), line));
        return segments;
    }

    // lstrip_blocks: spaces and tabs between the line start and a statement tag go, if nothing else is there.
    private static string LstripBlock(string chunk, bool lineStart)
    {
        int nl = chunk.LastIndexOf('\n');
        string tail = chunk[(nl + 1)..];
        if (tail.Any(c => !char.IsWhiteSpace(c))) return chunk;
        if (nl < 0 && !lineStart) return chunk;                                   // another tag precedes it on its line
        return chunk[..(nl + 1)];
    }

    private static int NextOpen(string s, int from)
    {
        for (int i = s.IndexOf('{', from); i >= 0 && i + 1 < s.Length; i = s.IndexOf('{', i + 1))
            if (s[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    // The end of a tag outside string literals and outside brackets (so "}}" closing a nested dict literal is not it).
    private static int CloseOutsideStrings(string s, int from, string close)
    {
        char quote = '\0';
        int depth = 0;
        for (int i = from; i + 1 < s.Length; i++)
        {
            char c = s[i];
            if (quote != '\0') { if (c == '\\') i++; else if (c == quote) quote = '\0'; }
            else if (c is '\'' or '"') quote = c;
            else if (depth == 0 && c == close[0] && s[i + 1] == close[1]) return i;
            else if (c is '(' or '[' or '{') depth++;
            else if (c is ')' or ']' or '}' && depth > 0) depth--;
        }
        return -1;
    }

    private static int Count(string s, int from, int to, char c)
    {
        int n = 0;
        for (int i = from; i < to && i < s.Length; i++) if (s[i] == c) n++;
        return n;
    }

    private static readonly string[] Operators = ["==", "!=", "<=", ">=", "//", "**", "+", "-", "*", "/", "%", "~", "<", ">",
        "(", ")", "[", "]", "{", "}", ".", ",", ":", "|", "="];

    /// <summary>The tokens of one tag's body; <paramref name="line"/> is for messages.</summary>
    public static List<Token> Tokenize(string body, int line)
    {
        var tokens = new List<Token>();
        int i = 0;
        while (i < body.Length)
        {
            char c = body[i];
            if (char.IsWhiteSpace(c)) { i++; continue; }
            if (char.IsLetter(c) || c == '_')
            {
                int start = i;
                while (i < body.Length && (char.IsLetterOrDigit(body[i]) || body[i] == '_')) i++;
                tokens.Add(new Token(TokenKind.Name, body[start..i]));
            }
            else if (char.IsDigit(c))
            {
                int start = i;
                while (i < body.Length && (char.IsDigit(body[i]) || body[i] == '_')) i++;
                bool isFloat = i + 1 < body.Length && body[i] == '.' && char.IsDigit(body[i + 1]);
                if (isFloat) { i++; while (i < body.Length && char.IsDigit(body[i])) i++; }
                string digits = body[start..i].Replace("_", "");
                tokens.Add(isFloat
                    ? new Token(TokenKind.Float, digits, double.Parse(digits, System.Globalization.CultureInfo.InvariantCulture))
                    : new Token(TokenKind.Integer, digits, long.Parse(digits, System.Globalization.CultureInfo.InvariantCulture)));
            }
            else if (c is '\'' or '"')
            {
                var sb = new StringBuilder();
                int j = i + 1;
                for (; j < body.Length && body[j] != c; j++)
                {
                    if (body[j] != '\\' || j + 1 >= body.Length) { sb.Append(body[j]); continue; }
                    j = Escape(body, j + 1, sb) - 1;
                }
                if (j >= body.Length) throw new MeteoraException($"chat template line {line}: unterminated string");
                tokens.Add(new Token(TokenKind.String, body[i..(j + 1)], sb.ToString()));
                i = j + 1;
            }
            else
            {
                string? op = Operators.FirstOrDefault(o => string.CompareOrdinal(body, i, o, 0, o.Length) == 0);
                if (op is null) throw new MeteoraException($"chat template line {line}: unexpected character '{c}'");
                tokens.Add(new Token(TokenKind.Operator, op));
                i += op.Length;
            }
        }
        tokens.Add(new Token(TokenKind.End, ""));
        return tokens;
    }

    // Python's string-literal escapes (jinja2 decodes literals with them), from the character after the backslash;
    // returns the index after the escape. Unknown escapes keep their backslash, as in Python.
    private static int Escape(string s, int at, StringBuilder sb)
    {
        char e = s[at];
        int Hex(int digits)
        {
            string hex = at + 1 + digits <= s.Length ? s.Substring(at + 1, digits) : "";
            if (hex.Length == digits && int.TryParse(hex, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out int v))
            {
                sb.Append(char.ConvertFromUtf32(v));
                return at + 1 + digits;
            }
            sb.Append('\\').Append(e);
            return at + 1;
        }
        switch (e)
        {
            case 'n': sb.Append('\n'); return at + 1;
            case 't': sb.Append('\t'); return at + 1;
            case 'r': sb.Append('\r'); return at + 1;
            case 'a': sb.Append('\a'); return at + 1;
            case 'b': sb.Append('\b'); return at + 1;
            case 'f': sb.Append('\f'); return at + 1;
            case 'v': sb.Append('\v'); return at + 1;
            case '\\' or '\'' or '"': sb.Append(e); return at + 1;
            case '\n': return at + 1;                                            // a backslash-newline continues the line
            case 'x': return Hex(2);
            case 'u': return Hex(4);
            case 'U': return Hex(8);
            case >= '0' and <= '7':
            {
                int end = at, value = 0;
                while (end < s.Length && end < at + 3 && s[end] is >= '0' and <= '7') value = value * 8 + (s[end++] - '0');
                sb.Append((char)value);
                return end;
            }
            default: sb.Append('\\').Append(e); return at + 1;
        }
    }
}
