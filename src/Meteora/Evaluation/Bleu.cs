using System.Text.RegularExpressions;
using Meteora.Tokenization;

namespace Meteora.Evaluation;

/// <summary>
/// Corpus BLEU as sacrebleu computes it by default: 13a tokenisation, n-grams up to 4, clipped counts summed over
/// the corpus, brevity penalty from total lengths, and "exp" smoothing for orders with no match
/// (precision = 100 / (2^j · total), j counting such orders). Scores are on the 0–100 scale.
/// </summary>
public static partial class Bleu
{
    private const int MaxOrder = 4;

    [GeneratedRegex(@"([\{-\~\[-\` -\&\(-\+\:-\@\/])")] private static partial Regex Punctuation();
    [GeneratedRegex(@"([^0-9])([\.,])")] private static partial Regex PeriodCommaUnlessPrecededByDigit();
    [GeneratedRegex(@"([\.,])([^0-9])")] private static partial Regex PeriodCommaUnlessFollowedByDigit();
    [GeneratedRegex(@"([0-9])(-)")] private static partial Regex DashAfterDigit();

    /// <summary>The mteval-v13a tokeniser (as sacrebleu's "13a").</summary>
    public static string[] Tokenize13a(string line)
    {
        line = line.Replace("<skipped>", "").Replace("-\n", "").Replace("\n", " ");
        if (line.Contains('&'))
            line = line.Replace("&quot;", "\"").Replace("&amp;", "&").Replace("&lt;", "<").Replace("&gt;", ">");
        line = $" {line} ";
        line = Punctuation().Replace(line, " $1 ");
        line = PeriodCommaUnlessPrecededByDigit().Replace(line, "$1 $2 ");
        line = PeriodCommaUnlessFollowedByDigit().Replace(line, " $1 $2");
        line = DashAfterDigit().Replace(line, "$1 $2 ");
        return PythonText.Split(line);        // sacrebleu splits with str.split(): tabs, U+00A0 … separate too
    }


    /// <summary>Corpus BLEU of hypotheses against one reference each.</summary>
    public static double Corpus(IReadOnlyList<string> hypotheses, IReadOnlyList<string> references)
    {
        if (hypotheses.Count != references.Count) throw new ArgumentException("one reference per hypothesis");
        var correct = new long[MaxOrder];
        var total = new long[MaxOrder];
        long sysLen = 0, refLen = 0;
        for (int i = 0; i < hypotheses.Count; i++)
        {
            var h = Tokenize13a(hypotheses[i]);
            var r = Tokenize13a(references[i]);
            sysLen += h.Length;
            refLen += r.Length;
            for (int n = 1; n <= MaxOrder; n++)
            {
                var refCounts = NGrams(r, n);
                foreach (var (gram, count) in NGrams(h, n))
                {
                    total[n - 1] += count;
                    correct[n - 1] += Math.Min(count, refCounts.GetValueOrDefault(gram));
                }
            }
        }
        // sacrebleu ≥ 2 stops early when no n-gram of any order matches (its issue #141): 0, not the smoothed value.
        if (correct.All(c => c == 0)) return 0;
        var precisions = new double[MaxOrder];
        double smooth = 1;
        for (int n = 0; n < MaxOrder; n++)
        {
            if (total[n] == 0) break;      // precision stays 0: the score is 0
            if (correct[n] == 0) { smooth *= 2; precisions[n] = 100.0 / (smooth * total[n]); }
            else precisions[n] = 100.0 * correct[n] / total[n];
        }
        if (precisions.Any(p => p == 0)) return 0;
        double bp = sysLen >= refLen ? 1 : sysLen > 0 ? Math.Exp(1 - (double)refLen / sysLen) : 0;
        return bp * Math.Exp(precisions.Average(Math.Log));
    }

    private static Dictionary<string, int> NGrams(string[] tokens, int n)
    {
        var counts = new Dictionary<string, int>();
        for (int i = 0; i + n <= tokens.Length; i++)
        {
            string key = string.Join('\u0001', tokens, i, n);
            counts[key] = counts.GetValueOrDefault(key) + 1;
        }
        return counts;
    }
}
