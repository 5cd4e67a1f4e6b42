using System.Text.Json;
using Meteora.Evaluation;

namespace Meteora.Tests.Evaluation;

/// <summary>
/// The original MeteoRA evaluation's accuracies ("exact": stripped, lower-cased output equals the lower-cased ground
/// truth; "fuzzy": containment) against the same definitions run in Python on 400 generated answer pairs — case
/// variants, surrounding whitespace of several kinds (U+00A0, U+2003, U+001C), İ, ß, final sigma, ligatures, Kelvin
/// sign, empty answers (bench/metrics/answer_match_pairs.py). And where our own Exact / Contains deliberately differ
/// from them: we trim the reference too.
/// </summary>
public class OriginalAccuracyParityTests
{
    private static readonly List<(string Hypothesis, string Reference, bool Exact, bool Fuzzy)> Pairs =
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Evaluation", "answer-match-pairs.json"))).RootElement
            .GetProperty("pairs").EnumerateArray()
            .Select(p => (p.GetProperty("hypothesis").GetString()!, p.GetProperty("reference").GetString()!,
                p.GetProperty("exact").GetBoolean(), p.GetProperty("fuzzy").GetBoolean())).ToList();

    private static string Show(string s) => JsonSerializer.Serialize(s);

    [Fact]
    public void OriginalExactAndFuzzyMatchPython()
    {
        Assert.True(Pairs.Count(p => p.Exact) > 50 && Pairs.Count(p => !p.Exact) > 50, "both outcomes are exercised");
        var wrong = Pairs.Where(p => AnswerMatch.OriginalExact(p.Hypothesis, p.Reference) != p.Exact
                                  || AnswerMatch.OriginalFuzzy(p.Hypothesis, p.Reference) != p.Fuzzy).ToList();
        Assert.True(wrong.Count == 0, $"{wrong.Count} of {Pairs.Count} differ, e.g. " + string.Join("; ", wrong.Take(8).Select(p =>
            $"{Show(p.Hypothesis)} vs {Show(p.Reference)}: python exact {p.Exact} fuzzy {p.Fuzzy}, ours {AnswerMatch.OriginalExact(p.Hypothesis, p.Reference)} {AnswerMatch.OriginalFuzzy(p.Hypothesis, p.Reference)}")));
    }

    /// <summary>Our Exact agrees with the original wherever the reference has no surrounding whitespace and plain casing.</summary>
    [Fact]
    public void OurExactDiffersOnlyWhereTheReferenceIsPadded()
    {
        var differing = Pairs.Where(p => AnswerMatch.Exact(p.Hypothesis, p.Reference) != p.Exact).ToList();
        Assert.All(differing.Where(p => p.Reference.Trim() == p.Reference && p.Reference.All(c => c < 0x80)),
            p => Assert.Fail($"{Show(p.Hypothesis)} vs {Show(p.Reference)}: ours {!p.Exact}, original {p.Exact}"));
        Assert.Contains(differing, p => p.Reference.Trim() != p.Reference);   // the deliberate difference shows up
    }
}
