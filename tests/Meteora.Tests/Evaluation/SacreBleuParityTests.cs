using System.Text.Json;
using Meteora.Evaluation;

namespace Meteora.Tests.Evaluation;

/// <summary>
/// Our BLEU against sacrebleu 2.6.0's corpus_bleu (defaults) on 330 generated hypothesis/reference pairs — empty
/// strings, unicode, digits next to punctuation, case and spacing changes, one-token answers — each scored as a
/// one-sentence corpus (as a single answer is), and on consecutive corpora of 20 pairs (as a task is). The pairs and
/// sacrebleu's scores were made by bench/metrics/sacrebleu_pairs.py on a GPU machine, where sacrebleu is installed.
/// </summary>
public class SacreBleuParityTests
{
    private static readonly JsonElement Fixture =
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Evaluation", "sacrebleu-pairs.json"))).RootElement;

    private static List<(string Hypothesis, string Reference, double Bleu)> Pairs() =>
        Fixture.GetProperty("pairs").EnumerateArray()
            .Select(p => (p.GetProperty("hypothesis").GetString()!, p.GetProperty("reference").GetString()!, p.GetProperty("bleu").GetDouble())).ToList();

    [Fact]
    public void EverySentenceScoreMatchesSacreBleu()
    {
        var pairs = Pairs();
        Assert.True(pairs.Count >= 300, $"{pairs.Count} pairs");
        Assert.Contains(pairs, p => p.Bleu > 0 && p.Bleu < 100);          // the fixture exercises partial matches
        var wrong = pairs.Select((p, i) => (i, p, ours: Bleu.Corpus([p.Hypothesis], [p.Reference])))
            .Where(x => Math.Abs(x.ours - x.p.Bleu) > 1e-9 * Math.Max(1, x.p.Bleu)).ToList();
        Assert.True(wrong.Count == 0, $"{wrong.Count} of {pairs.Count} differ, e.g. " + string.Join("; ", wrong.Take(12).Select(x =>
            $"#{x.i} hyp '{x.p.Hypothesis}' ref '{x.p.Reference}': ours {x.ours:R}, sacrebleu {x.p.Bleu:R}")));
    }

    [Fact]
    public void EveryCorpusScoreMatchesSacreBleu()
    {
        var pairs = Pairs();
        foreach (var corpus in Fixture.GetProperty("corpora").EnumerateArray())
        {
            var group = pairs.Skip(corpus.GetProperty("first").GetInt32()).Take(corpus.GetProperty("count").GetInt32()).ToList();
            double expected = corpus.GetProperty("bleu").GetDouble();
            double ours = Bleu.Corpus(group.Select(p => p.Hypothesis).ToList(), group.Select(p => p.Reference).ToList());
            Assert.True(Math.Abs(ours - expected) <= 1e-9 * Math.Max(1, expected), $"corpus from {corpus.GetProperty("first")}: ours {ours:R}, sacrebleu {expected:R}");
        }
    }
}
