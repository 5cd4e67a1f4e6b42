namespace Meteora.Evaluation;

/// <summary>Scores of one task: the task's own metric as accuracy, plus every metric for reference.</summary>
/// <param name="PaperAccuracy">the original MeteoRA evaluation's "fuzzy" accuracy (<see cref="AnswerMatch.OriginalFuzzy"/>)</param>
public sealed record TaskScore(string Task, string Metric, int Examples, double Accuracy, double ExactMatch,
    double Contains, double Numeric, double PaperAccuracy, double Bleu, RougeScores Rouge)
{
    /// <summary>Every test example's prompt, reference and the model's answer, in test.jsonl order (null: not kept).</summary>
    public IReadOnlyList<ScoredAnswer>? Answers { get; init; }
}

/// <summary>One test example as evaluated: what was asked, what was expected, what the model answered.</summary>
public sealed record ScoredAnswer(string Prompt, string Reference, string Answer);
