namespace Meteora.Tokenization.Jinja;

/// <summary>
/// A Jinja template, parsed once and rendered many times: the subset Hugging Face chat templates are written in
/// (text, <c>{{ }}</c>, <c>if/elif/else</c>, <c>for</c> with <c>loop</c>, filters and <c>else</c>, <c>set</c> and
/// <c>namespace()</c>, <c>macro</c>, <c>break/continue</c>, Python-like expressions, string/dict methods, the
/// common filters and tests, <c>raise_exception</c>, <c>strftime_now</c>), rendered with transformers' settings
/// (<c>trim_blocks</c>, <c>lstrip_blocks</c>, no autoescaping). .NET has no maintained Jinja engine to depend on
/// (Hugging Face wrote its own for JavaScript for the same reason); this one is checked against jinja2 itself on
/// fixture templates (tests/…/Tokenization/chat-templates.json), including the corner cases an outside review found.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly IReadOnlyList<Node> _nodes;

    private JinjaTemplate(string source, IReadOnlyList<Node> nodes) { Source = source; _nodes = nodes; }

    /// <summary>The template text.</summary>
    public string Source { get; }

    /// <summary>Parses <paramref name="source"/>; a syntax error or an unsupported tag is a <see cref="MeteoraException"/> naming the line.</summary>
    public static JinjaTemplate Parse(string source) => new(source, JinjaParser.Parse(source));

    /// <summary>
    /// Renders with <paramref name="context"/> as the template's variables (.NET strings, numbers, booleans, lists,
    /// dictionaries and JsonElements are converted to their Python counterparts). Throws
    /// <see cref="TemplateRenderException"/> when the template raises or fails.
    /// </summary>
    public string Render(IReadOnlyDictionary<string, object?> context) => JinjaInterpreter.Render(_nodes, context);
}
