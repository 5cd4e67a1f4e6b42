using System.Text.RegularExpressions;
using Meteora.Data;
using Meteora.Moe;
using Meteora.Tokenization;
using static TorchSharp.torch;

namespace Meteora.Evaluation;

/// <summary>How often the gates' first choice is the token's own task, over the tokens of one kind of text.</summary>
/// <param name="Tokens">decisions counted: labelled tokens × the projections their task's adapter adapts</param>
/// <param name="Agreement">share of those decisions whose top-1 adapter is the token's task</param>
/// <param name="ByLayer">the same per decoder layer</param>
/// <param name="ByTask">the same per task</param>
public sealed record RoutingAgreement(long Tokens, double Agreement, IReadOnlyDictionary<int, double> ByLayer, IReadOnlyDictionary<string, double> ByTask);

/// <summary>
/// A diagnostic for composite prompts (docs/RESULTS.md "Composite: what the gates lose"): the gates' top-1 adapter
/// against each token's own task, on the answer lines of teacher-forced composite-n prompts (the prompt of
/// <see cref="CompositePrompt"/> followed by every answer line with its reference answer) and on the same problems
/// alone (BOS, the problem, a space and its reference, as a single-task prompt reads). One forward per sequence, no
/// generation, so it is a cheap signal for gate training aimed at composite prompts.
/// </summary>
public static partial class CompositeRoutingProbe
{
    [GeneratedRegex(@"^model\.layers\.(\d+)\.")] private static partial Regex LayerOf();

    /// <summary>Measures (answer lines in composite prompts, the same problems alone) for <paramref name="examples"/> composite-n prompts.</summary>
    public static (RoutingAgreement InComposite, RoutingAgreement Alone) Measure(MeteoraModel model, HfTokenizer tokenizer, string dataFolder,
        IReadOnlyList<string> tasks, int n, int examples, int seed)
    {
        var train = tasks.ToDictionary(t => t, t => TaskData.ReadTrain(Path.Combine(dataFolder, t)));
        var test = tasks.ToDictionary(t => t, t => TaskData.ReadJsonl(Path.Combine(dataFolder, t, "test.jsonl")));
        var adapterOf = tasks.ToDictionary(t => t, t => model.AdapterNames.ToList().IndexOf(t) is var a && a >= 0 ? a
            : throw new MeteoraException($"routing probe: the checkpoint has no adapter named '{t}' (it has {string.Join(", ", model.AdapterNames)})"));
        var rng = new Random(seed);
        var composite = new Tally();
        var alone = new Tally();
        for (int e = 0; e < examples; e++)
        {
            var example = CompositePrompt.Build(train, test, n, rng);
            // Teacher-forced answer block: every line with its reference; labels line by line (the last line as the "head").
            var lines = example.Parts.Select((p, i) => CompositePrompt.AnswerLine(i + 1, p.Prompt, p.Reference)).ToList();
            string answered = string.Concat(lines.Take(n - 1).Select(l => l + "\n"));
            var labels = CompositeEvaluator.TokenTasks(tokenizer, example, answered, lines[^1], n - 1);
            var ids = tokenizer.Encode(example.Prompt + answered + lines[^1]);
            int answersStart = tokenizer.Encode(example.Prompt).Length;
            Count(model, ids, labels.Select((t, j) => j >= answersStart ? t : null).ToList(), adapterOf, composite);
            foreach (var part in example.Parts)
            {
                var single = tokenizer.Encode(part.Prompt + " " + part.Reference);
                Count(model, single, single.Select((_, j) => j == 0 ? null : (string?)part.Task).ToList(), adapterOf, alone);
            }
        }
        return (composite.Result(), alone.Result());
    }

    /// <summary>One forward of <paramref name="ids"/> with the gates (no forced routing), tallying top-1 against the labels.</summary>
    private static void Count(MeteoraModel model, IReadOnlyList<int> ids, IReadOnlyList<string?> labels, Dictionary<string, int> adapterOf, Tally tally)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var recorder = new RoutingRecorder { RecordIndices = true };
        var forced = model.Routing.Forced;
        model.Routing.Forced = null;
        model.Attach(recorder);
        try { model.Forward(tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Count])); }
        finally { model.Attach(null); model.Routing.Forced = forced; }
        // A projection that the token's own adapter does not adapt cannot route it right: not counted.
        var ranks = model.Projections.ToDictionary(p => p.Site.Key, p => p.Adapters.Ranks);
        foreach (var (key, rows) in recorder.Trace())
        {
            int layer = int.Parse(LayerOf().Match(key).Groups[1].Value);
            for (int j = 0; j < rows.Length && j < labels.Count; j++)
                if (labels[j] is { } task && ranks[key][adapterOf[task]] > 0) tally.Add(layer, task, rows[j][0] == adapterOf[task]);
        }
    }

    private sealed class Tally
    {
        private readonly Dictionary<int, (long N, long Right)> _layers = [];
        private readonly Dictionary<string, (long N, long Right)> _tasks = [];
        private long _n, _right;

        public void Add(int layer, string task, bool right)
        {
            int r = right ? 1 : 0;
            _n++; _right += r;
            var (ln, lr) = _layers.GetValueOrDefault(layer); _layers[layer] = (ln + 1, lr + r);
            var (tn, tr) = _tasks.GetValueOrDefault(task); _tasks[task] = (tn + 1, tr + r);
        }

        public RoutingAgreement Result() => new(_n, _n == 0 ? 0 : (double)_right / _n,
            _layers.OrderBy(kv => kv.Key).ToDictionary(kv => kv.Key, kv => (double)kv.Value.Right / kv.Value.N),
            _tasks.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToDictionary(kv => kv.Key, kv => (double)kv.Value.Right / kv.Value.N));
    }
}
