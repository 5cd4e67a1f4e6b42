using System.Globalization;
using System.Text.RegularExpressions;
using Meteora.Tokenization;

namespace Meteora.Evaluation;

/// <summary>
/// Per-example answer checks: exact match and containment (both case-insensitive, surrounding whitespace
/// ignored), numeric answers (the last number in the text, compared as a number), and the original MeteoRA
/// evaluation's two accuracies for side-by-side comparison (<see cref="OriginalExact"/>, <see cref="OriginalFuzzy"/>).
/// </summary>
public static partial class AnswerMatch
{
    public static bool Exact(string hypothesis, string reference) =>
        string.Equals(PythonText.Strip(hypothesis), PythonText.Strip(reference), StringComparison.OrdinalIgnoreCase);

    public static bool Contains(string hypothesis, string reference) =>
        hypothesis.Contains(PythonText.Strip(reference), StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The original MeteoRA evaluation's "exact" accuracy (eval/clean.py strips and lower-cases the output, eval/eval.py
    /// lower-cases the ground truth and compares): <c>hypothesis.strip().lower() == reference.lower()</c>, in Python's
    /// semantics. Unlike <see cref="Exact"/> the reference is not trimmed.
    /// </summary>
    public static bool OriginalExact(string hypothesis, string reference) =>
        PythonText.Lower(PythonText.Strip(hypothesis)) == PythonText.Lower(reference);

    /// <summary>The original evaluation's "fuzzy" accuracy: <c>reference.lower() in hypothesis.strip().lower()</c> (Python semantics).</summary>
    public static bool OriginalFuzzy(string hypothesis, string reference) =>
        PythonText.Lower(PythonText.Strip(hypothesis)).Contains(PythonText.Lower(reference), StringComparison.Ordinal);

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
