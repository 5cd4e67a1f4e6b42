using System.Globalization;
using System.Text.RegularExpressions;

namespace Meteora.Evaluation;

/// <summary>
/// Per-example answer checks: exact match and containment (both case-insensitive, surrounding whitespace
/// ignored), numeric answers (the last number in the text, compared as a number), and the original MeteoRA
/// evaluation's quirk (hypothesis lower-cased, reference not, substring test) for side-by-side comparison.
/// </summary>
public static partial class AnswerMatch
{
    public static bool Exact(string hypothesis, string reference) =>
        string.Equals(hypothesis.Trim(), reference.Trim(), StringComparison.OrdinalIgnoreCase);

    public static bool Contains(string hypothesis, string reference) =>
        hypothesis.Contains(reference.Trim(), StringComparison.OrdinalIgnoreCase);

    /// <summary>The original code's accuracy: <c>reference in hypothesis.lower()</c> — so a reference with capitals never matches.</summary>
    public static bool PaperSubstring(string hypothesis, string reference) =>
        hypothesis.ToLowerInvariant().Contains(reference, StringComparison.Ordinal);

    // ASCII digits only: .NET's \d also matches other scripts' digits (a generated "߃"), which double.Parse refuses.
    [GeneratedRegex(@"[-+]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?")]
    private static partial Regex NumberPattern();

    /// <summary>The last number in <paramref name="text"/> ("1,234", "-5", "3.25"), or null.</summary>
    public static double? LastNumber(string text)
    {
        var matches = NumberPattern().Matches(text);
        if (matches.Count == 0) return null;
        return double.Parse(matches[^1].Value.Replace(",", ""), NumberStyles.Float, CultureInfo.InvariantCulture);
    }

    /// <summary>Whether the last numbers of hypothesis and reference are equal (within 1e-9 relative).</summary>
    public static bool Numeric(string hypothesis, string reference) =>
        LastNumber(hypothesis) is { } h && LastNumber(reference) is { } r && Math.Abs(h - r) <= 1e-9 * Math.Max(1, Math.Abs(r));
}
