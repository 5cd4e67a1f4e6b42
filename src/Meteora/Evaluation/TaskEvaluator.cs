using System.Text.Json;
using Meteora.Data;
using Meteora.Llama;
using Meteora.Tokenization;

namespace Meteora.Evaluation;

/// <summary>
/// Per-task evaluation: greedy answers to each task's test prompts (batched, until EOS), scored with the task's
/// metric from task.json (<see cref="TaskMetric"/>: exact, contains, numeric, bleu or rouge-l; exact when there is
/// no manifest) and with every other metric for reference.
/// </summary>
public static class TaskEvaluator
{
    /// <summary>The metric a task folder declares in task.json ("metric"), or exact match.</summary>
    public static TaskMetric MetricOf(string taskFolder)
    {
        string path = Path.Combine(taskFolder, "task.json");
        if (!File.Exists(path)) return TaskMetric.Exact;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new MeteoraException($"{path}: expected a JSON object");
            if (!doc.RootElement.TryGetProperty("metric", out var m) || m.ValueKind == JsonValueKind.Null) return TaskMetric.Exact;
            if (m.ValueKind != JsonValueKind.String) throw new MeteoraException($"{path}: field 'metric' must be a string");
            string metric = m.GetString()!;
            return TaskMetric.TryParse(metric)
                ?? throw new MeteoraException($"{path}: unknown metric '{metric}' ({string.Join(", ", TaskMetric.Names)})");
        }
        catch (JsonException e)
        {
            throw new MeteoraException($"{path}: invalid JSON ({e.Message.Split('\n')[0]})");
        }
    }

    /// <summary>
    /// Scores <paramref name="lm"/> on the first <paramref name="limit"/> rows of <c>test.jsonl</c> in
    /// <paramref name="taskFolder"/>: greedy answers in batches of <paramref name="batchSize"/>, at most
    /// <paramref name="maxNewTokens"/> each; <paramref name="onProgress"/> gets (done, total) after each batch.
    /// </summary>
    public static TaskScore Evaluate(string task, string taskFolder, LlamaForCausalLM lm, HfTokenizer tokenizer,
        int limit, int batchSize, int maxNewTokens, Action<int, int>? onProgress = null)
    {
        var test = TaskData.ReadJsonl(Path.Combine(taskFolder, "test.jsonl")).Take(limit).ToList();
        var metric = MetricOf(taskFolder);
        var answers = GreedyAnswers.Generate(lm, tokenizer, test.Select(e => e.Prompt).ToList(), maxNewTokens, batchSize,
            done => onProgress?.Invoke(done, test.Count));
        var refs = test.Select(e => e.Response).ToList();
        double Share(Func<string, string, bool> f) => answers.Zip(refs).Count(p => f(p.First, p.Second)) / (double)test.Count;
        double exact = Share(AnswerMatch.Exact), contains = Share(AnswerMatch.Contains), numeric = Share(AnswerMatch.Numeric);
        double accuracy = metric.Corpus(answers, refs);
        return new TaskScore(task, metric.Name, test.Count, accuracy, exact, contains, numeric, Share(AnswerMatch.OriginalFuzzy),
            Bleu.Corpus(answers, refs), Rouge.Mean(answers, refs))
        {
            Answers = test.Zip(answers, (e, a) => new ScoredAnswer(e.Prompt, e.Response, a)).ToList(),
        };
    }
}
