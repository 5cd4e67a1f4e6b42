using Meteora.Evaluation;

namespace Meteora.Tests.Evaluation;

/// <summary>
/// Metric values worked out by hand. BLEU follows sacrebleu's corpus_bleu defaults (13a tokens, n ≤ 4, "exp"
/// smoothing: an order with no match gets precision 100 / (2^j · total)); ROUGE follows Google's rouge-score
/// without stemming. The arithmetic is written next to each expected number.
/// </summary>
public class MetricTests
{
    [Fact]
    public void Tokenize13aSplitsPunctuationButKeepsDecimals()
    {
        // '!', '$', '(' and ')' are in the punctuation classes; ',' and '.' split unless between digits.
        Assert.Equal(["Hello", ",", "world", "!", "It", "costs", "$", "3.50", "(", "approx", ".", ")"],
            Bleu.Tokenize13a("Hello, world! It costs $3.50 (approx.)"));
    }

    [Fact]
    public void BleuOfAnIdenticalSentenceIs100()
    {
        Assert.Equal(100.0, Bleu.Corpus(["the cat sat on the mat"], ["the cat sat on the mat"]), 9);
    }

    [Fact]
    public void BleuWithExpSmoothing()
    {
        // hyp "the the the the" vs ref "the cat": 1-grams: 'the' clipped to 1 of 4 → p1 = 25;
        // 2-, 3-, 4-grams: 0 of 3, 0 of 2, 0 of 1 → 100/(2·3) = 16.667, 100/(4·2) = 12.5, 100/(8·1) = 12.5;
        // hyp longer than ref → BP = 1; BLEU = (25 · 16.667 · 12.5 · 12.5)^(1/4) = 65104.17^(1/4) = √255.155 = 15.9736.
        Assert.Equal(15.9736, Bleu.Corpus(["the the the the"], ["the cat"]), 3);
    }

    [Fact]
    public void BleuBrevityPenalty()
    {
        // Every hypothesis n-gram occurs in the reference (p1..p4 = 100); 6 tokens vs 7 → BP = e^(1 − 7/6) = 0.846482.
        Assert.Equal(84.6482, Bleu.Corpus(["the cat sat on the mat"], ["the cat sat on the mat today"]), 3);
    }

    [Fact]
    public void BleuCountsOverTheWholeCorpus()
    {
        // Two identical pairs give the same precisions and lengths as one: still 100; an empty hypothesis has no
        // 1-grams at all → 0.
        Assert.Equal(100.0, Bleu.Corpus(["a b c d", "e f g h"], ["a b c d", "e f g h"]), 9);
        Assert.Equal(0.0, Bleu.Corpus([""], ["a b c d"]));
    }

    [Fact]
    public void RougeOneTwoAndL()
    {
        // h = the cat sat on the mat, r = the cat is on the mat (6 tokens each).
        // ROUGE-1: overlap the×2, cat, on, mat = 5 → P = R = 5/6 → F1 = 0.8333.
        // ROUGE-2: bigrams shared: "the cat", "on the", "the mat" = 3 of 5 each → F1 = 0.6.
        // ROUGE-L: LCS = the cat on the mat = 5 → F1 = 0.8333.
        var s = Rouge.Score("the cat sat on the mat", "the cat is on the mat");
        Assert.Equal(5.0 / 6, s.Rouge1, 9);
        Assert.Equal(0.6, s.Rouge2, 9);
        Assert.Equal(5.0 / 6, s.RougeL, 9);
    }

    [Fact]
    public void RougeIgnoresCaseAndPunctuation()
    {
        var s = Rouge.Score("The Cat!", "the cat");
        Assert.Equal((1.0, 1.0, 1.0), (s.Rouge1, s.Rouge2, s.RougeL));
        Assert.Equal(0.0, Rouge.Score("", "the cat").Rouge1);
        // LCS respects order: "b a" vs "a b" → LCS 1 of 2 → F1 0.5, while ROUGE-1 is 1.
        var swapped = Rouge.Score("b a", "a b");
        Assert.Equal((1.0, 0.5), (swapped.Rouge1, swapped.RougeL));
    }

    [Fact]
    public void AnswerMatching()
    {
        Assert.True(AnswerMatch.Exact("  Paris ", "paris"));
        Assert.False(AnswerMatch.Exact("Paris, France", "paris"));
        Assert.True(AnswerMatch.Contains("It is Paris, France", "paris"));
        // The original evaluation lower-cases both sides but strips only the hypothesis.
        Assert.True(AnswerMatch.OriginalFuzzy("The answer is PARIS", "Paris"));
        Assert.True(AnswerMatch.OriginalExact(" PARIS\n", "Paris"));
        Assert.False(AnswerMatch.OriginalExact("Paris", "Paris\n"));
        Assert.True(AnswerMatch.Exact("Paris", "Paris\n"));
    }

    [Fact]
    public void NumericAnswersUseTheLastNumber()
    {
        Assert.Equal(-7, AnswerMatch.LastNumber("it is 1,234.5 or -7"));
        Assert.Equal(1234.5, AnswerMatch.LastNumber("total: 1,234.5"));
        Assert.Null(AnswerMatch.LastNumber("no digits"));
        Assert.Equal(12, AnswerMatch.LastNumber("12 \u07C3"));   // an NKo digit (a generated answer had one) is no number
        Assert.True(AnswerMatch.Numeric("so the sum is 502.", "502"));
        Assert.False(AnswerMatch.Numeric("5020", "502"));
    }
}

public class TaskMetricTests
{
    [Fact]
    public void TaskJsonNamesTheMetricAndBadManifestsAreOneLineErrors()
    {
        string dir = Path.Combine(Path.GetTempPath(), "meteora-metric-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            Assert.Equal("exact", TaskEvaluator.MetricOf(dir).Name);                      // no manifest
            string path = Path.Combine(dir, "task.json");
            foreach (var (json, name) in new[] { ("""{"metric":"bleu"}""", "bleu"), ("""{"metric":"ROUGE-L"}""", "rouge-l"),
                         ("""{"metric":"rouge"}""", "rouge-l"), ("""{"metric":"numeric"}""", "numeric"), ("""{"name":"x"}""", "exact") })
            {
                File.WriteAllText(path, json);
                Assert.Equal(name, TaskEvaluator.MetricOf(dir).Name);
            }
            foreach (var (json, says) in new[] { ("""{"metric":"f1"}""", "unknown metric 'f1'"), ("""{"metric":3}""", "'metric' must be a string"),
                         ("[1]", "expected a JSON object"), ("{\"metric\":", "invalid JSON") })
            {
                File.WriteAllText(path, json);
                var e = Assert.Throws<MeteoraException>(() => TaskEvaluator.MetricOf(dir));
                Assert.Contains(path, e.Message);
                Assert.Contains(says, e.Message);
                Assert.DoesNotContain('\n', e.Message);
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void GradedMetricsScoreOnTheZeroToOneScale()
    {
        var bleu = TaskMetric.TryParse("bleu")!;
        var rouge = TaskMetric.TryParse("rouge-l")!;
        Assert.True(bleu.IsGraded && rouge.IsGraded && !TaskMetric.Exact.IsGraded);
        // Corpus BLEU / 100 (the 84.6482 of BleuBrevityPenalty), not a mean of sentence scores.
        Assert.Equal(0.846482, bleu.Corpus(["the cat sat on the mat"], ["the cat sat on the mat today"]), 5);
        Assert.Equal(0.846482, bleu.Example("the cat sat on the mat", "the cat sat on the mat today"), 5);
        // ROUGE-L: LCS "the cat" of 2/3 hyp and 2/2 ref tokens → F1 = 2·(2/3)·1 / (2/3 + 1) = 0.8; mean with an exact 1.
        Assert.Equal(0.8, rouge.Example("the big cat", "the cat"), 9);
        Assert.Equal(0.9, rouge.Corpus(["the big cat", "a dog"], ["the cat", "a dog"]), 9);
        Assert.Equal(0.5, TaskMetric.TryParse("numeric")!.Corpus(["it is 12", "13"], ["12", "14"]), 9);
        Assert.Null(TaskMetric.TryParse("accuracy"));
    }
}
