using System.Text;
using System.Text.Json;
using Meteora.IO;

namespace Meteora.Evaluation;

/// <summary>
/// Writes per-task scores as results.json and a Markdown table (results.md) into a report folder, and each task's
/// answers (prompt, reference, answer per test example) as answers/&lt;task&gt;.jsonl where the scores kept them.
/// </summary>
public static class EvaluationReport
{
    /// <summary>Writes results.json and results.md for <paramref name="scores"/> into <paramref name="folder"/> (atomically), headed by <paramref name="mode"/> and <paramref name="settings"/>.</summary>
    public static void Write(string folder, string mode, IReadOnlyList<TaskScore> scores, IReadOnlyDictionary<string, string> settings)
    {
        Directory.CreateDirectory(folder);
        AtomicFile.WriteAllText(Path.Combine(folder, "results.json"), JsonSerializer.Serialize(new
        {
            mode, settings, mean_accuracy = scores.Count > 0 ? scores.Average(s => s.Accuracy) : 0,
            tasks = scores.Select(s => new
            {
                task = s.Task, metric = s.Metric, examples = s.Examples, accuracy = s.Accuracy, exact_match = s.ExactMatch,
                contains = s.Contains, numeric = s.Numeric, paper_accuracy = s.PaperAccuracy, bleu = s.Bleu,
                rouge1 = s.Rouge.Rouge1, rouge2 = s.Rouge.Rouge2, rougeL = s.Rouge.RougeL,
            }),
        }, new JsonSerializerOptions { WriteIndented = true }));
        AtomicFile.WriteAllText(Path.Combine(folder, "results.md"), Markdown(mode, scores));
        foreach (var score in scores.Where(s => s.Answers is not null))
        {
            Directory.CreateDirectory(Path.Combine(folder, "answers"));
            var lines = score.Answers!.Select(a => JsonSerializer.Serialize(new { prompt = a.Prompt, reference = a.Reference, answer = a.Answer }, JsonLines));
            AtomicFile.WriteAllText(Path.Combine(folder, "answers", score.Task + ".jsonl"), string.Concat(lines.Select(l => l + "\n")));
        }
    }

    // One object per line, non-ASCII text kept readable.
    private static readonly JsonSerializerOptions JsonLines = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string Markdown(string mode, IReadOnlyList<TaskScore> scores)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"# Evaluation: {mode}").AppendLine();
        sb.AppendLine("| task | metric | n | accuracy | exact | contains | numeric | paper | BLEU | ROUGE-L |");
        sb.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var s in scores)
            sb.AppendLine($"| {s.Task} | {s.Metric} | {s.Examples} | {s.Accuracy:F3} | {s.ExactMatch:F3} | {s.Contains:F3} | {s.Numeric:F3} | {s.PaperAccuracy:F3} | {s.Bleu:F1} | {s.Rouge.RougeL:F3} |");
        if (scores.Count > 0) sb.AppendLine($"| **mean** | | {scores.Sum(s => s.Examples)} | **{scores.Average(s => s.Accuracy):F3}** | | | | | | |");
        return sb.ToString();
    }
}
