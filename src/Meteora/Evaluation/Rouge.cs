using System.Text.RegularExpressions;

namespace Meteora.Evaluation;

/// <summary>ROUGE-1, ROUGE-2 and ROUGE-L F1 of one hypothesis against one reference (0–1).</summary>
public sealed record RougeScores(double Rouge1, double Rouge2, double RougeL);

/// <summary>
/// ROUGE as Google's rouge-score package computes it without stemming: lower-case, every run of characters other
/// than a–z and 0–9 is a separator, n-gram overlap F1 for ROUGE-1/2 and longest-common-subsequence F1 for
/// ROUGE-L. Corpus scores are the mean over examples.
/// </summary>
public static partial class Rouge
{
    [GeneratedRegex("[^a-z0-9]+")] private static partial Regex NonAlphanumeric();

    public static string[] Tokenize(string text) =>
        NonAlphanumeric().Replace(text.ToLowerInvariant(), " ").Split(' ', StringSplitOptions.RemoveEmptyEntries);

    public static RougeScores Score(string hypothesis, string reference)
    {
        var h = Tokenize(hypothesis);
        var r = Tokenize(reference);
        return new RougeScores(NGramF1(h, r, 1), NGramF1(h, r, 2), LcsF1(h, r));
    }

    /// <summary>Mean of each score over the examples.</summary>
    public static RougeScores Mean(IReadOnlyList<string> hypotheses, IReadOnlyList<string> references)
    {
        if (hypotheses.Count != references.Count) throw new ArgumentException("one reference per hypothesis");
        if (hypotheses.Count == 0) return new RougeScores(0, 0, 0);
        var all = hypotheses.Zip(references, Score).ToList();
        return new RougeScores(all.Average(s => s.Rouge1), all.Average(s => s.Rouge2), all.Average(s => s.RougeL));
    }

    private static double F1(double overlap, int hypCount, int refCount)
    {
        if (overlap == 0 || hypCount == 0 || refCount == 0) return 0;
        double p = overlap / hypCount, r = overlap / refCount;
        return 2 * p * r / (p + r);
    }

    private static double NGramF1(string[] h, string[] r, int n)
    {
        var hc = Counts(h, n);
        var rc = Counts(r, n);
        int overlap = hc.Sum(kv => Math.Min(kv.Value, rc.GetValueOrDefault(kv.Key)));
        return F1(overlap, hc.Values.Sum(), rc.Values.Sum());
    }

    private static Dictionary<string, int> Counts(string[] tokens, int n)
    {
        var c = new Dictionary<string, int>();
        for (int i = 0; i + n <= tokens.Length; i++)
        {
            string key = string.Join(' ', tokens, i, n);
            c[key] = c.GetValueOrDefault(key) + 1;
        }
        return c;
    }

    private static double LcsF1(string[] h, string[] r)
    {
        // Classic dynamic programme over (hypothesis prefix, reference prefix); one row kept at a time.
        var prev = new int[r.Length + 1];
        var cur = new int[r.Length + 1];
        for (int i = 1; i <= h.Length; i++)
        {
            for (int j = 1; j <= r.Length; j++)
                cur[j] = h[i - 1] == r[j - 1] ? prev[j - 1] + 1 : Math.Max(prev[j], cur[j - 1]);
            (prev, cur) = (cur, prev);
        }
        return F1(prev[r.Length], h.Length, r.Length);
    }
}
