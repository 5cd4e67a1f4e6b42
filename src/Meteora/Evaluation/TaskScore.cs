namespace Meteora.Evaluation;

/// <summary>Scores of one task: the task's own metric as accuracy, plus every metric for reference.</summary>
public sealed record TaskScore(string Task, string Metric, int Examples, double Accuracy, double ExactMatch,
    double Contains, double Numeric, double PaperAccuracy, double Bleu, RougeScores Rouge);
