using Meteora.Generation;
using Meteora.Llama;
using Meteora.Tokenization;
using Meteora.Training;

namespace Meteora.Evaluation;

/// <summary>Composite-n results: accuracy per sub-task and the mean share of sub-problems answered right.</summary>
public sealed record CompositeScore(int N, int Examples, IReadOnlyDictionary<string, double> PerTask, double AverageCorrect)
{
    /// <summary>The first composite prompt's token ids and the model's answer ids (for a routing heatmap).</summary>
    public (int[] Prompt, int[] Output)? First { get; init; }
}

/// <summary>
/// Runs composite-n prompts (<see cref="CompositePrompt"/>) through one model with greedy decoding and scores each
/// sub-problem with its task's metric, as the paper reports: per-task scores (the task's metric over its sub-answers)
/// and "average correct" (the mean per-prompt share of sub-problems right; a graded metric's sub-answer counts
/// with its sentence score).
/// </summary>
public static class CompositeEvaluator
{
    public static CompositeScore Evaluate(LlamaForCausalLM lm, HfTokenizer tokenizer, string dataFolder, IReadOnlyList<string> tasks,
        int n, int examples, int seed, int batchSize, int maxNewTokensPerPart)
    {
        var train = tasks.ToDictionary(t => t, t => TaskData.ReadTrain(Path.Combine(dataFolder, t)));
        var test = tasks.ToDictionary(t => t, t => TaskData.ReadJsonl(Path.Combine(dataFolder, t, "test.jsonl")));
        var metrics = tasks.ToDictionary(t => t, t => TaskEvaluator.MetricOf(Path.Combine(dataFolder, t)));
        var rng = new Random(seed);
        var built = Enumerable.Range(0, examples).Select(_ => CompositePrompt.Build(train, test, n, rng)).ToList();

        // The answer block ends the prompt and has n lines. Task adapters end an answer with EOS (as they were trained),
        // so EOS is suppressed here and a row stops after its n-th newline; each line restates its problem, hence the
        // budget of the longest problem plus the per-answer budget per line.
        var generator = new TextGenerator(lm);
        int newline = tokenizer.Encode("\n", addSpecialTokens: false).Single();
        int longestProblem = built.SelectMany(b => b.Parts).Select(p => tokenizer.Encode(p.Prompt, addSpecialTokens: false).Length).DefaultIfEmpty(0).Max();
        var options = new GenerationOptions
        {
            MaxNewTokens = (longestProblem + 5 + maxNewTokensPerPart) * n,
            SuppressIds = SpecialTokens.EosIds(lm.Config, tokenizer),
            StopWhen = row => row.Count(t => t == newline) >= n,
        };
        var hypotheses = tasks.ToDictionary(t => t, _ => new List<string>());
        var references = tasks.ToDictionary(t => t, _ => new List<string>());
        double sumShare = 0;
        (int[], int[])? first = null;
        for (int i = 0; i < built.Count; i += batchSize)
        {
            var batch = built.Skip(i).Take(batchSize).ToList();
            var prompts = batch.Select(b => tokenizer.Encode(b.Prompt)).ToList();
            var outputs = generator.Generate(prompts, options);
            first ??= (prompts[0], outputs[0]);
            foreach (var (example, ids) in batch.Zip(outputs))
            {
                var answers = CompositePrompt.ParseAnswers(tokenizer.Decode(ids), example.Parts.Select(p => p.Prompt).ToList());
                double right = 0;
                foreach (var (part, answer) in example.Parts.Zip(answers))
                {
                    hypotheses[part.Task].Add(answer);
                    references[part.Task].Add(part.Reference);
                    right += metrics[part.Task].Example(answer, part.Reference);
                }
                sumShare += right / n;
            }
        }
        var perTask = tasks.Where(t => hypotheses[t].Count > 0).ToDictionary(t => t, t => metrics[t].Corpus(hypotheses[t], references[t]));
        return new CompositeScore(n, built.Count, perTask, built.Count > 0 ? sumShare / built.Count : 0) { First = first };
    }
}
