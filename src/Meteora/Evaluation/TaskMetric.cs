namespace Meteora.Evaluation;

/// <summary>
/// A task's metric, as its <c>task.json</c> names it: <c>exact</c>, <c>contains</c> and <c>numeric</c> judge each
/// answer right or wrong (<see cref="AnswerMatch"/>); <c>bleu</c> (sacrebleu's corpus BLEU, 0–1 here) and
/// <c>rouge-l</c> (mean ROUGE-L F1) grade free-text answers. One scale for every metric, 0–1, so per-task tables and
/// means mix them as the paper's tables do.
/// </summary>
public sealed class TaskMetric
{
    /// <summary>The metric names task.json may give (aliases: "rouge", "rougeL", "rouge_l" → rouge-l).</summary>
    public static readonly IReadOnlyList<string> Names = ["exact", "contains", "numeric", "bleu", "rouge-l"];

    private TaskMetric(string name) => Name = name;

    /// <summary>The canonical name ("exact", "contains", "numeric", "bleu", "rouge-l").</summary>
    public string Name { get; }

    /// <summary>Exact match, the default for a task with no manifest.</summary>
    public static readonly TaskMetric Exact = new("exact");

    /// <summary>The metric called <paramref name="name"/>, or null for an unknown name.</summary>
    public static TaskMetric? TryParse(string name) => name.Trim().ToLowerInvariant() switch
    {
        "exact" or "exact_match" or "em" => Exact,
        "contains" => new("contains"),
        "numeric" => new("numeric"),
        "bleu" or "sacrebleu" => new("bleu"),
        "rouge-l" or "rouge" or "rougel" or "rouge_l" => new("rouge-l"),
        _ => null,
    };

    /// <summary>Whether answers are graded (BLEU, ROUGE-L) rather than judged right or wrong.</summary>
    public bool IsGraded => Name is "bleu" or "rouge-l";

    /// <summary>One answer's score in 0–1 (sentence BLEU for "bleu": the corpus formula over one pair).</summary>
    public double Example(string hypothesis, string reference) => Name switch
    {
        "contains" => AnswerMatch.Contains(hypothesis, reference) ? 1 : 0,
        "numeric" => AnswerMatch.Numeric(hypothesis, reference) ? 1 : 0,
        "bleu" => Bleu.Corpus([hypothesis], [reference]) / 100,
        "rouge-l" => Rouge.Score(hypothesis, reference).RougeL,
        _ => AnswerMatch.Exact(hypothesis, reference) ? 1 : 0,
    };

    /// <summary>
    /// The task's score over all its answers, 0–1: the share judged right, corpus BLEU / 100 (as sacrebleu reports a
    /// test set, not a mean of sentence scores), or mean ROUGE-L F1.
    /// </summary>
    public double Corpus(IReadOnlyList<string> hypotheses, IReadOnlyList<string> references)
    {
        if (hypotheses.Count != references.Count) throw new ArgumentException("one reference per hypothesis");
        if (hypotheses.Count == 0) return 0;
        return Name == "bleu" ? Bleu.Corpus(hypotheses, references) / 100
            : hypotheses.Zip(references, Example).Average();
    }

    public override string ToString() => Name;
}
