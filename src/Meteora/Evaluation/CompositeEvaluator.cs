using Meteora.Data;
using Meteora.Generation;
using Meteora.Llama;
using Meteora.Tokenization;

namespace Meteora.Evaluation;

/// <summary>Composite-n results: accuracy per sub-task and the mean share of sub-problems answered right.</summary>
public sealed record CompositeScore(int N, int Examples, IReadOnlyDictionary<string, double> PerTask, double AverageCorrect)
{
    /// <summary>The first composite prompt's token ids and the model's answer ids (for a routing heatmap).</summary>
    public (int[] Prompt, int[] Output)? First { get; init; }
}

/// <summary>
/// Hand routing of guided composite lines, a diagnostic (<c>eval --route-by-task</c> on composite prompts: is what a
/// composite answer loses the gates' or the adapters'?). <see cref="Route"/> is called with each line's task before the
/// model completes that line's answer — with <see cref="PerToken"/>, also with the task of every token of the text the
/// model reads (null where a token belongs to no task: the instruction, headers, BOS) — and with (null, null) at the end.
/// </summary>
public sealed record GuidedRouting(Action<string?, IReadOnlyList<string?>?> Route, bool PerToken);

/// <summary>
/// Runs composite-n prompts (<see cref="CompositePrompt"/>) through one model with greedy decoding and scores each
/// sub-problem with its task's metric, as the paper reports: per-task scores (the task's metric over its sub-answers)
/// and "average correct" (the mean per-prompt share of sub-problems right; a graded metric's sub-answer counts
/// with its sentence score).
/// </summary>
public static class CompositeEvaluator
{
    /// <param name="guided">
    /// false (free): the model writes the whole answer block, restating each problem before its answer. true
    /// (guided): the evaluator writes each answer line's number and problem and the model only completes the answer,
    /// line after line in the one growing sequence — every answer still comes after all the earlier problems and
    /// answers, and routing still has to switch at each line, but a model that cannot copy a line is not failed
    /// for that
    /// </param>
    /// <param name="routing">
    /// Guided only: hand routing of each line (<see cref="GuidedRouting"/>). Rows whose line i belongs to different tasks
    /// are generated in separate calls; with per-token routing each row alone.
    /// </param>
    public static CompositeScore Evaluate(LlamaForCausalLM lm, HfTokenizer tokenizer, string dataFolder, IReadOnlyList<string> tasks,
        int n, int examples, int seed, int batchSize, int maxNewTokensPerPart, bool guided = false, GuidedRouting? routing = null)
    {
        if (routing is not null && !guided) throw new ArgumentException("routing each line by hand needs guided composite prompts (the evaluator knows where each line starts)");
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
            var outputs = guided ? GuidedAnswerBlocks(generator, tokenizer, batch, newline, maxNewTokensPerPart, options.SuppressIds.ToHashSet(), routing)
                : generator.Generate(prompts, options).Select(ids => tokenizer.Decode(ids)).ToList();
            first ??= (prompts[0], tokenizer.Encode(outputs[0], addSpecialTokens: false));
            foreach (var (example, text) in batch.Zip(outputs))
            {
                var answers = CompositePrompt.ParseAnswers(text, example.Parts.Select(p => p.Prompt).ToList());
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

    /// <summary>
    /// Guided answer blocks: for i = 1…n the evaluator appends "i. problem" and the model continues greedily until it
    /// ends the line or the answer (a newline or EOS: an adapter ends its answer with EOS, as it was trained); the line
    /// joins the sequence before the next. Returns each example's answer block. With <paramref name="routing"/>, the rows
    /// of each line are generated task by task (per token: row by row), the callback told the task first.
    /// </summary>
    internal static List<string> GuidedAnswerBlocks(TextGenerator generator, HfTokenizer tokenizer, IReadOnlyList<CompositeExample> batch,
        int newline, int maxNewTokensPerPart, HashSet<int> eos, GuidedRouting? routing = null)
    {
        var blocks = batch.Select(_ => new System.Text.StringBuilder()).ToList();
        var options = new GenerationOptions
        {
            MaxNewTokens = maxNewTokensPerPart + 1,
            StopWhen = row => row.Count > 0 && (row[^1] == newline || eos.Contains(row[^1])),
        };
        int n = batch[0].Parts.Count;
        for (int i = 0; i < n; i++)
        {
            var heads = batch.Select((b, r) => $"{i + 1}. {b.Parts[i].Prompt}").ToList();
            // Without hand routing one call for the whole batch; with it, one per task of this line (per token: per row).
            var groups = routing is null ? [Enumerable.Range(0, batch.Count).ToList()]
                : routing.PerToken ? Enumerable.Range(0, batch.Count).Select(r => new List<int> { r }).ToList()
                : Enumerable.Range(0, batch.Count).GroupBy(r => batch[r].Parts[i].Task).Select(g => g.ToList()).ToList();
            foreach (var rows in groups)
            {
                routing?.Route(batch[rows[0]].Parts[i].Task,
                    routing.PerToken ? TokenTasks(tokenizer, batch[rows[0]], blocks[rows[0]].ToString(), heads[rows[0]], i) : null);
                var prompts = rows.Select(r => tokenizer.Encode(batch[r].Prompt + blocks[r] + heads[r])).ToList();
                var outputs = generator.Generate(prompts, options);
                foreach (var (r, output) in rows.Zip(outputs))
                {
                    string line = tokenizer.Decode(output).Split('\n')[0];
                    blocks[r].Append(heads[r]).Append(line).Append('\n');
                }
            }
        }
        routing?.Route(null, null);
        return blocks.Select(b => b.ToString()).ToList();
    }

    /// <summary>
    /// The task of every token of <c>example.Prompt + answered + head</c> as the model reads it (BOS first): each line's
    /// own (the prompt's from <see cref="CompositeExample.LineTasks"/>, answer line j's part j's, the head part i's), null
    /// for the instruction and headers. Lines are encoded one by one; where that would not give the text's own tokens
    /// (a token across a line break), it refuses.
    /// </summary>
    internal static IReadOnlyList<string?> TokenTasks(HfTokenizer tokenizer, CompositeExample example, string answered, string head, int line)
    {
        var promptLines = example.Prompt.Split('\n')[..^1];                                       // the prompt ends with "\n"
        var lineTasks = example.LineTasks ?? throw new MeteoraException("per-token routing needs composite examples built with their line tasks");
        if (lineTasks.Count != promptLines.Length)
            throw new MeteoraException($"composite example: {lineTasks.Count} line tasks for {promptLines.Length} prompt lines");
        var answerLines = answered.Split('\n')[..^1];
        var pieces = promptLines.Select((l, j) => (Text: l + "\n", Task: lineTasks[j]))
            .Concat(answerLines.Select((l, j) => (Text: l + "\n", Task: (string?)example.Parts[j].Task)))
            .Append((Text: head, Task: example.Parts[line].Task)).ToList();
        var tasks = new List<string?>();
        var ids = new List<int>();
        for (int j = 0; j < pieces.Count; j++)
        {
            var piece = tokenizer.Encode(pieces[j].Text, addSpecialTokens: j == 0);
            ids.AddRange(piece);
            tasks.AddRange(Enumerable.Repeat(pieces[j].Task, piece.Length));
            if (j == 0 && piece.Length > 0) tasks[0] = null;                                       // BOS (or the first token of the instruction)
        }
        var whole = tokenizer.Encode(example.Prompt + answered + head);
        if (!whole.SequenceEqual(ids))
            throw new MeteoraException("per-token routing: this tokenizer merges tokens across line breaks, so lines cannot be labelled one by one");
        return tasks;
    }
}
