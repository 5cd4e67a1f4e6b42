using System.Globalization;
using System.Text;

namespace Meteora.Tokenization;

/// <summary>
/// Python's <c>str.split()</c> / <c>str.strip()</c> whitespace and <c>str.lower()</c>, which the reference
/// implementations we match (sacrebleu's tokenisation, the original MeteoRA evaluation's accuracy) are written in.
/// .NET differs at the edges: U+001C–U+001F are whitespace to Python, and Python lower-cases with Unicode's full
/// mapping (İ → i + U+0307) and the final-sigma rule (ΟΔΟΣ → οδος with ς).
/// </summary>
internal static class PythonText
{
    public static bool IsSpace(char c) => char.IsWhiteSpace(c) || c is >= '\x1c' and <= '\x1f';

    /// <summary><c>str.strip()</c>: whitespace removed from both ends (<c>lstrip()</c> / <c>rstrip()</c>: from one).</summary>
    public static string Strip(string s, bool left = true, bool right = true)
    {
        int start = 0, end = s.Length;
        if (left) while (start < end && IsSpace(s[start])) start++;
        if (right) while (end > start && IsSpace(s[end - 1])) end--;
        return s[start..end];
    }

    /// <summary><c>str.split()</c> without arguments: runs of whitespace separate, none at the ends.</summary>
    public static string[] Split(string s)
    {
        var tokens = new List<string>();
        int start = -1;
        for (int i = 0; i <= s.Length; i++)
        {
            if (i == s.Length || IsSpace(s[i])) { if (start >= 0) { tokens.Add(s[start..i]); start = -1; } }
            else if (start < 0) start = i;
        }
        return [.. tokens];
    }

    /// <summary><c>str.lower()</c>: invariant lower case plus the two context rules .NET's simple mapping lacks.</summary>
    public static string Lower(string s)
    {
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c == '\u0130') sb.Append("i\u0307");                       // İ: SpecialCasing's one unconditional lower-case expansion
            else if (c == '\u03a3') sb.Append(FinalSigma(s, i) ? '\u03c2' : '\u03c3');
            else sb.Append(char.ToLowerInvariant(c));
        }
        return sb.ToString();
    }

    // Σ at the end of a word (a cased letter before it, none after it, case-ignorable characters skipped) is ς.
    private static bool FinalSigma(string s, int at)
    {
        int i = at - 1;
        while (i >= 0 && CaseIgnorable(s[i])) i--;
        if (i < 0 || !Cased(s[i])) return false;
        int j = at + 1;
        while (j < s.Length && CaseIgnorable(s[j])) j++;
        return j >= s.Length || !Cased(s[j]);
    }

    private static bool Cased(char c) => char.IsUpper(c) || char.IsLower(c) || CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.TitlecaseLetter;

    private static bool CaseIgnorable(char c) => c is '\'' or '.' or ':' or '^' or '`' or '\u00b7' or '\u2019' ||
        CharUnicodeInfo.GetUnicodeCategory(c) is UnicodeCategory.NonSpacingMark or UnicodeCategory.EnclosingMark
            or UnicodeCategory.Format or UnicodeCategory.ModifierLetter or UnicodeCategory.ModifierSymbol;
}
