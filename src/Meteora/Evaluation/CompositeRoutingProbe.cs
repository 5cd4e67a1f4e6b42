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
/// <summary>One decoder layer of <see cref="LinearProbeResult"/>: shares of its decisions each router gets right.</summary>
public sealed record LinearProbeLayer(int Layer, long Decisions, double CompositeFitted, double AloneFitted, double Gates);

/// <summary>
/// <see cref="CompositeRoutingProbe.FitLinearGates"/>: on the test prompts' answer lines, the share of decisions (labelled
/// tokens × projections their task's adapter adapts) whose task a linear probe fitted on composite prompts, one fitted on
/// the problems alone, and the checkpoint's gates pick first.
/// </summary>
public sealed record LinearProbeResult(int TrainPrompts, long TrainDecisions, long TestDecisions, double CompositeFitted, double AloneFitted,
    double Gates, IReadOnlyList<LinearProbeLayer> ByLayer);

public static partial class CompositeRoutingProbe
{
    [GeneratedRegex(@"^model\.layers\.(\d+)\.")] private static partial Regex LayerOf();

    /// <summary>Measures (answer lines in composite prompts, the same problems alone) for <paramref name="examples"/> composite-n prompts.</summary>
    public static (RoutingAgreement InComposite, RoutingAgreement Alone) Measure(MeteoraModel model, HfTokenizer tokenizer, string dataFolder,
        IReadOnlyList<string> tasks, int n, int examples, int seed)
    {
        var (train, test) = ReadSplits(dataFolder, tasks);
        var adapterOf = AdapterIndices(model, tasks);
        var rng = new Random(seed);
        var composite = new Tally();
        var alone = new Tally();
        for (int e = 0; e < examples; e++)
        {
            var example = CompositePrompt.Build(train, test, n, rng);
            var (ids, labels) = TeacherForced(tokenizer, example, n);
            Count(model, ids, labels, adapterOf, composite);
            foreach (var (single, singleLabels) in Alone(tokenizer, example))
                Count(model, single, singleLabels, adapterOf, alone);
        }
        return (composite.Result(), alone.Result());
    }

    /// <summary>
    /// The composite prompt with its whole answer block teacher-forced (every line with its reference) and each answer
    /// line's tokens labelled with its task (the prompt's tokens unlabelled).
    /// </summary>
    private static (IReadOnlyList<int> Ids, IReadOnlyList<string?> Labels) TeacherForced(HfTokenizer tokenizer, CompositeExample example, int n)
    {
        var lines = example.Parts.Select((p, i) => CompositePrompt.AnswerLine(i + 1, p.Prompt, p.Reference)).ToList();
        string answered = string.Concat(lines.Take(n - 1).Select(l => l + "\n"));
        var labels = CompositeEvaluator.TokenTasks(tokenizer, example, answered, lines[^1], n - 1);   // the last line as the "head"
        var ids = tokenizer.Encode(example.Prompt + answered + lines[^1]);
        int answersStart = tokenizer.Encode(example.Prompt).Length;
        return (ids, labels.Select((t, j) => j >= answersStart ? t : null).ToList());
    }

    /// <summary>Each sub-problem alone: BOS, the problem, a space and its reference, every token but BOS labelled with its task.</summary>
    private static IEnumerable<(IReadOnlyList<int> Ids, IReadOnlyList<string?> Labels)> Alone(HfTokenizer tokenizer, CompositeExample example) =>
        example.Parts.Select(part =>
        {
            var single = tokenizer.Encode(part.Prompt + " " + part.Reference);
            return ((IReadOnlyList<int>)single, (IReadOnlyList<string?>)single.Select((_, j) => j == 0 ? null : (string?)part.Task).ToList());
        });

    /// <summary>
    /// Whether any linear gate on this base could route the answer lines of composite prompts (docs/RESULTS.md): per
    /// projection, a linear classifier of the token's task from the projection's input — what a MeteoRA gate reads —
    /// fitted on <paramref name="trainExamples"/> teacher-forced composite-n prompts whose problems come from the
    /// training split (and, as a control, one fitted on the same problems alone, as most gate-training rows read), then
    /// scored on the <paramref name="testExamples"/> prompts <see cref="Measure"/> uses (same seed), against the gates'
    /// own top-1 on the same decisions. Inputs are recorded with the checkpoint's gates routing, as at inference.
    /// </summary>
    public static LinearProbeResult FitLinearGates(MeteoraModel model, HfTokenizer tokenizer, string dataFolder, IReadOnlyList<string> tasks,
        int n, int trainExamples, int testExamples, int seed, Action<string>? progress = null)
    {
        var (train, test) = ReadSplits(dataFolder, tasks);
        var adapterOf = AdapterIndices(model, tasks);
        var trainRng = new Random(unchecked(seed * 7919 + 1));
        using var compositeTrain = new Samples();
        using var aloneTrain = new Samples();
        for (int e = 0; e < trainExamples; e++)
        {
            var example = CompositePrompt.Build(train, train, n, trainRng);
            var (ids, labels) = TeacherForced(tokenizer, example, n);
            Record(model, ids, labels, adapterOf, compositeTrain);
            foreach (var (single, singleLabels) in Alone(tokenizer, example)) Record(model, single, singleLabels, adapterOf, aloneTrain);
            if (e == 0 && (compositeTrain.Bytes + aloneTrain.Bytes) * (double)trainExamples is var estimate && estimate > MaxRecordedBytes)
                // Every projection's float32 input of every labelled token stays in memory until the fits: refuse early.
                throw new MeteoraException($"--linear-probe {trainExamples}: the recorded inputs would take about {estimate / (1L << 30):F0} GiB " +
                    $"({(compositeTrain.Bytes + aloneTrain.Bytes) / (double)(1 << 20):F0} MiB per prompt on this model); use at most " +
                    $"{Math.Max(1, (long)(MaxRecordedBytes / Math.Max(1, compositeTrain.Bytes + aloneTrain.Bytes)))} prompts");
            if ((e + 1) % 25 == 0) progress?.Invoke($"linear probe: {e + 1}/{trainExamples} training prompts recorded");
        }
        var rng = new Random(seed);
        using var compositeTest = new Samples();
        for (int e = 0; e < testExamples; e++)
        {
            var (ids, labels) = TeacherForced(tokenizer, CompositePrompt.Build(train, test, n, rng), n);
            Record(model, ids, labels, adapterOf, compositeTest);
        }
        var layers = new SortedDictionary<int, long[]>();                   // layer → decisions, probe right, alone-fitted right, gates right
        int L = model.AdapterNames.Count;
        foreach (var key in compositeTest.Keys.ToList())
        {
            using var scope = NewDisposeScope();
            var (x, y, gates) = compositeTest.Take(key);
            var counts = layers.TryGetValue(LayerIndex(key), out var c) ? c : layers[LayerIndex(key)] = new long[4];
            counts[0] += y.shape[0];
            counts[1] += RightAfterFit(compositeTrain, key, x, y, L);
            counts[2] += RightAfterFit(aloneTrain, key, x, y, L);
            counts[3] += gates.eq(y).sum().item<long>();
            compositeTrain.Drop(key); aloneTrain.Drop(key); compositeTest.Drop(key);   // fitted: free its inputs
        }
        progress?.Invoke($"linear probe: {layers.Count} layers fitted");
        static double Share(long right, long total) => total == 0 ? 0 : (double)right / total;
        long total = layers.Values.Sum(v => v[0]);
        return new LinearProbeResult(trainExamples, compositeTrain.Tokens, total,
            Share(layers.Values.Sum(v => v[1]), total), Share(layers.Values.Sum(v => v[2]), total), Share(layers.Values.Sum(v => v[3]), total),
            layers.Select(kv => new LinearProbeLayer(kv.Key, kv.Value[0], Share(kv.Value[1], kv.Value[0]), Share(kv.Value[2], kv.Value[0]),
                Share(kv.Value[3], kv.Value[0]))).ToList());
    }

    /// <summary>Rows of (x, y) a probe fitted on <paramref name="samples"/>' rows of <paramref name="key"/> gets right (0 without any).</summary>
    private static long RightAfterFit(Samples samples, string key, Tensor x, Tensor y, int classes)
    {
        if (!samples.Has(key)) return 0;
        var (trainX, trainY, _) = samples.Take(key);
        if (trainY.shape[0] < 2) return 0;                                                  // nothing to fit a probe on
        using var probe = LinearProbe.Fit(trainX, trainY, classes);
        return probe.Right(x, y);
    }

    private static (Dictionary<string, List<TaskExample>> Train, Dictionary<string, List<TaskExample>> Test) ReadSplits(string dataFolder, IReadOnlyList<string> tasks) =>
        (tasks.ToDictionary(t => t, t => TaskData.ReadTrain(Path.Combine(dataFolder, t))),
         tasks.ToDictionary(t => t, t => TaskData.ReadJsonl(Path.Combine(dataFolder, t, "test.jsonl"))));

    /// <summary>One forward of ids (a batch of one) with the gates routing (any forced routing put back after), into <paramref name="recorder"/>.</summary>
    private static void ForwardWithGates(MeteoraModel model, IReadOnlyList<int> ids, RoutingRecorder recorder)
    {
        var forced = model.Routing.Forced;
        model.Routing.Forced = null;
        model.Attach(recorder);
        try { model.Forward(tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Count])); }
        finally { model.Attach(null); model.Routing.Forced = forced; }
    }

    /// <summary>Most bytes of recorded inputs <see cref="FitLinearGates"/> will hold (it refuses a prompt count that would need more).</summary>
    internal static long MaxRecordedBytes { get; set; } = 16L << 30;

    private static int LayerIndex(string key) => int.Parse(LayerOf().Match(key).Groups[1].Value);

    private static Dictionary<string, int> AdapterIndices(MeteoraModel model, IReadOnlyList<string> tasks) =>
        tasks.ToDictionary(t => t, t => model.AdapterNames.ToList().IndexOf(t) is var a && a >= 0 ? a
            : throw new MeteoraException($"routing probe: the checkpoint has no adapter named '{t}' (it has {string.Join(", ", model.AdapterNames)})"));

    /// <summary>One forward with the gates, keeping each projection's input rows of labelled tokens (where the label's adapter adapts it).</summary>
    private static void Record(MeteoraModel model, IReadOnlyList<int> ids, IReadOnlyList<string?> labels, Dictionary<string, int> adapterOf, Samples samples)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var recorder = new RoutingRecorder { RecordIndices = true, RecordInputs = true };
        ForwardWithGates(model, ids, recorder);
        var ranks = model.Projections.ToDictionary(p => p.Site.Key, p => p.Adapters.Ranks);
        var inputs = recorder.Inputs();
        foreach (var (key, rows) in recorder.Trace())
        {
            var keep = Enumerable.Range(0, Math.Min(rows.Length, labels.Count))
                .Where(j => labels[j] is { } task && ranks[key][adapterOf[task]] > 0).ToArray();
            if (keep.Length == 0) continue;
            samples.Add(key, inputs[key].index_select(0, tensor(keep.Select(j => (long)j).ToArray())),
                keep.Select(j => (long)adapterOf[labels[j]!]).ToArray(), keep.Select(j => rows[j][0]).ToArray());
        }
    }

    /// <summary>Per projection: input rows (float32, CPU), their tasks' adapter indices and the gates' top-1.</summary>
    private sealed class Samples : IDisposable
    {
        private readonly Dictionary<string, (List<Tensor> X, List<long> Y, List<long> Gates)> _byKey = [];
        public long Tokens { get; private set; }
        /// <summary>Bytes of the input rows held now.</summary>
        public long Bytes { get; private set; }
        public IEnumerable<string> Keys => _byKey.Keys;
        public bool Has(string key) => _byKey.ContainsKey(key);

        public void Add(string key, Tensor x, long[] y, long[] gates)
        {
            if (!_byKey.TryGetValue(key, out var entry)) _byKey[key] = entry = ([], [], []);
            entry.X.Add(x.DetachFromDisposeScope());
            entry.Y.AddRange(y);
            entry.Gates.AddRange(gates);
            Tokens += y.Length;
            Bytes += x.numel() * x.ElementSize;
        }

        /// <summary>Frees a projection's rows once its probes are fitted.</summary>
        public void Drop(string key)
        {
            if (!_byKey.Remove(key, out var entry)) return;
            foreach (var t in entry.X) { Bytes -= t.numel() * t.ElementSize; t.Dispose(); }
        }

        public void Dispose()
        {
            foreach (var key in _byKey.Keys.ToList()) Drop(key);
        }

        /// <summary>(rows, in) float32, (rows,) int64 tasks, (rows,) int64 gates' top-1.</summary>
        public (Tensor X, Tensor Y, Tensor Gates) Take(string key)
        {
            var (x, y, g) = _byKey[key];
            if (x.Count > 1) { var all = cat(x, 0).DetachFromDisposeScope(); foreach (var t in x) t.Dispose(); x.Clear(); x.Add(all); }
            return (x[0], tensor(y.ToArray()), tensor(g.ToArray()));
        }
    }

    /// <summary>One forward of <paramref name="ids"/> with the gates (no forced routing), tallying top-1 against the labels.</summary>
    private static void Count(MeteoraModel model, IReadOnlyList<int> ids, IReadOnlyList<string?> labels, Dictionary<string, int> adapterOf, Tally tally)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var recorder = new RoutingRecorder { RecordIndices = true };
        ForwardWithGates(model, ids, recorder);
        // A projection that the token's own adapter does not adapt cannot route it right: not counted.
        var ranks = model.Projections.ToDictionary(p => p.Site.Key, p => p.Adapters.Ranks);
        foreach (var (key, rows) in recorder.Trace())
        {
            int layer = LayerIndex(key);
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
