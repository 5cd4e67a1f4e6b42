using System.Text.Json;
using Meteora.Llama;
using Meteora.Tokenization;
using Meteora.Training;

namespace Meteora.Evaluation;

/// <summary>
/// Per-task evaluation: greedy answers to each task's test prompts (batched, until EOS), scored with the task's
/// metric from task.json ("exact" or "numeric"; "exact" when there is no manifest) and with every other metric
/// for reference.
/// </summary>
public static class TaskEvaluator
{
    /// <summary>The metric a task folder declares in task.json, or "exact".</summary>
    public static string MetricOf(string taskFolder)
    {
        string path = Path.Combine(taskFolder, "task.json");
        if (!File.Exists(path)) return "exact";
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            string metric = doc.RootElement.TryGetProperty("metric", out var m) ? m.GetString() ?? "exact" : "exact";
            return metric is "exact" or "numeric" or "contains" ? metric
                : throw new MeteoraException($"{path}: unknown metric '{metric}' (exact, numeric, contains)");
        }
        catch (JsonException e)
        {
            throw new MeteoraException($"{path}: invalid JSON ({e.Message.Split('\n')[0]})");
        }
    }

    public static TaskScore Evaluate(string task, string taskFolder, LlamaForCausalLM lm, HfTokenizer tokenizer,
        int limit, int batchSize, int maxNewTokens, Action<int, int>? onProgress = null)
    {
        var test = TaskData.ReadJsonl(Path.Combine(taskFolder, "test.jsonl")).Take(limit).ToList();
        string metric = MetricOf(taskFolder);
        var answers = GreedyAnswers.Generate(lm, tokenizer, test.Select(e => e.Prompt).ToList(), maxNewTokens, batchSize,
            done => onProgress?.Invoke(done, test.Count));
        var refs = test.Select(e => e.Response).ToList();
        double Share(Func<string, string, bool> f) => answers.Zip(refs).Count(p => f(p.First, p.Second)) / (double)test.Count;
        double exact = Share(AnswerMatch.Exact), contains = Share(AnswerMatch.Contains), numeric = Share(AnswerMatch.Numeric);
        double accuracy = metric switch { "numeric" => numeric, "contains" => contains, _ => exact };
        return new TaskScore(task, metric, test.Count, accuracy, exact, contains, numeric, Share(AnswerMatch.PaperSubstring),
            Bleu.Corpus(answers, refs), Rouge.Mean(answers, refs));
    }
}
