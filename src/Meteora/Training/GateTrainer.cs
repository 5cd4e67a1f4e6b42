using Meteora.Data;
using Meteora.Distributed;
using Meteora.Generation;
using Meteora.Llama;
using Meteora.Lora;
using Meteora.Moe;
using Meteora.Reporting;
using Meteora.Tokenization;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>MeteoRA-specific settings of <c>train-gate</c>.</summary>
public sealed record GateTrainingOptions
{
    public double GateLossWeight { get; init; } = 50;
    public int TopK { get; init; } = 2;
    public double Temperature { get; init; } = 1.0;
    /// <summary>"small" (default) or "normal" (the original's N(0, 1)).</summary>
    public string GateInit { get; init; } = "small";
    public bool TrainAdapters { get; init; }
    /// <summary>Share of each task's train.jsonl held out for evaluation.</summary>
    public double EvalFraction { get; init; } = 0.1;
    /// <summary>
    /// Examples of different tasks per training sequence (<see cref="SequenceEncoder.Pack"/>; 1 = one example per
    /// sequence): with more, the gates see the task change mid-sequence, as in a composite prompt, and the gate loss
    /// follows each part's task.
    /// </summary>
    public int Pack { get; init; } = 1;
}

/// <summary>Result of a gate training run.</summary>
/// <param name="FinalEval">the evaluation of the written gates: the last step's, or with --keep-best the kept step's</param>
/// <param name="GateAccuracyByTask">
/// a completed run's held-out gate accuracy per task (share of its (projection, position) decisions whose top-1 is
/// the task's adapter, over every held-out example); empty without held-out data or when interrupted
/// </param>
public sealed record GateTrainingResult(TrainingOutcome Outcome, int TrainExamples, int EvalExamples, int Truncated,
    IReadOnlyDictionary<string, double>? InitialEval, IReadOnlyDictionary<string, double> FinalEval,
    IReadOnlyDictionary<string, double> GateAccuracyByTask);

/// <summary>
/// <c>train-gate</c>: builds a MeteoRA model from a base and N adapters (adapter i = task i = gate index i),
/// trains the gates on the union of the tasks' data with the MeteoRA loss, and writes the checkpoint folder
/// with metrics.jsonl and loss_curve.png beside it.
/// </summary>
public static class GateTrainer
{
    /// <summary>
    /// Trains gates for <paramref name="adapters"/> (name = task folder under <paramref name="dataFolder"/>, folder =
    /// PEFT adapter; the order is the gate order) over the base in <paramref name="baseFolder"/>, writing checkpoints
    /// and the final MeteoRA folder to <paramref name="outDir"/>. Stops cleanly (checkpoint kept) on <paramref name="cancel"/>.
    /// With a <paramref name="communicator"/> of several ranks, each rank (one process per GPU) calls this with the
    /// same arguments and trains its share of every step (<see cref="TrainingLoop"/>); rank 0 reports and writes.
    /// </summary>
    public static GateTrainingResult Train(string baseFolder, IReadOnlyList<(string Name, string Folder)> adapters,
        string dataFolder, string outDir, GateTrainingOptions gate, TrainingOptions options, Device device, ScalarType dtype,
        ITrainingProgress? progress = null, CancellationToken cancel = default, ICommunicator? communicator = null)
    {
        options.Validate();
        bool lead = (communicator?.Rank ?? 0) == 0;
        progress = SilentProgress.OnRankZero(progress, communicator?.Rank ?? 0);
        if (gate.EvalFraction is < 0 or >= 1) throw new MeteoraException($"--eval-fraction: {gate.EvalFraction} must be in [0, 1)");
        if (!(gate.GateLossWeight >= 0)) throw new MeteoraException($"--gate-loss-weight: {gate.GateLossWeight} must be ≥ 0");
        if (adapters.Count == 0) throw new MeteoraException("train-gate: no adapters given");
        CheckTasks(dataFolder, adapters.Select(a => a.Name).ToList());
        if (gate.TopK < 1 || gate.TopK > adapters.Count) throw new MeteoraException($"--top-k: {gate.TopK} must be between 1 and the {adapters.Count} adapters");

        using var tokenizer = HfTokenizer.Load(baseFolder);
        var config = LlamaConfig.Load(baseFolder);
        int? eos = SpecialTokens.TrainingEos(config, tokenizer);
        var encoder = new SequenceEncoder(tokenizer, options.MaxSeqLen, options.ResponseOnlyFor(gates: true), eos);
        if (gate.Pack < 1 || gate.Pack > 64) throw new MeteoraException($"--pack: {gate.Pack} is out of range (1…64)");
        // Packed sequences are built from the plain rows: restated lists and in-context documents would be made and
        // then thrown away.
        if (gate.Pack > 1 && options.RestateShare > 0) throw new MeteoraException("--pack and --restate cannot be combined (packed sequences are built from the plain examples)");
        if (gate.Pack > 1 && options.InContextShare > 0) throw new MeteoraException("--pack and --in-context cannot be combined (packed sequences are built from the plain examples)");
        var train = new List<EncodedExample>();
        var eval = new List<EncodedExample>();
        var trainRows = new List<(TaskExample Example, int Task)>();
        for (int task = 0; task < adapters.Count; task++)
        {
            var rows = TaskData.ReadTrain(Path.Combine(dataFolder, adapters[task].Name));
            var (kept, held) = HeldOut.Split(rows.Count, gate.EvalFraction, new Random(unchecked(options.Seed * 31 + task)));
            eval.AddRange(held.Select(i => encoder.Encode(rows[i], task)));
            // Training examples may sit mid-document (--in-context); held-out ones stay plain, comparable across runs.
            train.AddRange(kept.Order().Select(i => encoder.Encode(rows[i], task, InContextExamples.ContextFor(task * 1_000_000 + i, options))));
            trainRows.AddRange(kept.Order().Select(i => (rows[i], task)));
        }
        if (options.RestateShare > 0)   // restated-list sequences replace a share of the examples (of other tasks beside each)
        {
            int restated = RestatedLists.Replace(train, trainRows, encoder, options);
            progress.Message($"restated lists: {restated} of {train.Count} training rows");
        }
        if (gate.Pack > 1) train = Packed(trainRows, Math.Min(gate.Pack, adapters.Count), options.Seed, encoder);
        eval = Interleave(eval);   // evaluation takes the first --eval-limit examples: every task must be among them
        if (eval.Count > 0)
        {
            var measured = eval.Take(options.EvalLimit).GroupBy(e => e.Task).OrderBy(g => g.Key).Select(g => $"{adapters[g.Key].Name} {g.Count()}");
            progress.Message($"evaluation during training: {Math.Min(options.EvalLimit, eval.Count)} of {eval.Count} held-out examples ({string.Join(", ", measured)})");
        }
        int truncated = train.Count(e => e.Truncated) + eval.Count(e => e.Truncated);
        if (truncated > 0) progress.Message($"truncated {truncated} of {train.Count + eval.Count} sequences to --max-seq-len {options.MaxSeqLen}");
        progress.Message($"{adapters.Count} tasks: {string.Join(", ", adapters.Select((a, i) => $"{i}={a.Name} ({train.Count(e => e.Task == i)}+{eval.Count(e => e.Task == i)})"))} train+eval examples");

        var loaded = adapters.Select(a => LoraAdapter.Load(a.Folder, config, a.Name)).ToList();
        var targets = LoraAdapter.TargetNames(loaded);
        using var m = MeteoraModel.Build(baseFolder, loaded, targets, device, dtype, gate.TrainAdapters ? ScalarType.Float32 : null);
        m.Configure(gate.TopK, gate.Temperature, MixingStrategy.Dense);
        var objective = new MeteoraObjective(m, gate.GateLossWeight, gate.TrainAdapters, Path.GetFullPath(baseFolder),
            adapters.Select(a => (string?)Path.GetFullPath(a.Folder)).ToList());
        objective.InitializeGates(gate.GateInit, options.Seed);
        int padId = SpecialTokens.PadId(config, eos);
        var loop = new TrainingLoop(objective, options, outDir, padId, device, progress, communicator);
        var outcome = loop.Run(train, eval.Count > 0 ? eval : null, cancel);

        string metrics = Path.Combine(outDir, "metrics.jsonl");
        var byTask = new Dictionary<string, double>();
        if (outcome == TrainingOutcome.Completed && eval.Count > 0)
        {
            byTask = AccuracyByTask(m, eval, adapters.Select(a => a.Name).ToList(), options.BatchSize, padId, device, gate.GateLossWeight);
            progress.Message("held-out gate accuracy by task: " + string.Join(", ", byTask.Select(kv => $"{kv.Key} {kv.Value:P1}")));
            var line = new Dictionary<string, object> { ["step"] = options.Steps ?? 0, ["kind"] = "gate_acc_by_task" };
            foreach (var (t, a) in byTask) line[t] = Math.Round(a, 6);
            if (lead) File.AppendAllText(metrics, System.Text.Json.JsonSerializer.Serialize(line) + "\n");
        }
        if (lead && File.Exists(metrics))
            LossCurvePlot.Write(metrics, Path.Combine(outDir, "loss_curve.png"), ["lm_loss", "gate_loss"], $"train-gate: {adapters.Count} adapters, λ = {gate.GateLossWeight:G}");
        return new GateTrainingResult(outcome, train.Count, eval.Count, truncated, loop.InitialEvaluation, loop.WrittenEvaluation, byTask);
    }

    /// <summary>
    /// As many sequences as it takes to use every example once (⌈rows / pack⌉), each of <paramref name="pack"/> examples
    /// of distinct tasks drawn at random (seeded); each task's examples are taken in a shuffled order, cycled, so small
    /// tasks recur. A sequence's group (for --balance) is its first part's task.
    /// </summary>
    internal static List<EncodedExample> Packed(IReadOnlyList<(TaskExample Example, int Task)> rows, int pack, int seed, SequenceEncoder encoder)
    {
        var rng = new Random(unchecked(seed * 7_919 + 3));
        var byTask = rows.GroupBy(r => r.Task).ToDictionary(g => g.Key, g => { var a = g.ToArray(); rng.Shuffle(a); return a; });
        var next = byTask.Keys.ToDictionary(t => t, _ => 0);
        var taskIds = byTask.Keys.Order().ToArray();
        pack = Math.Min(pack, taskIds.Length);
        int sequences = (rows.Count + pack - 1) / pack;
        var result = new List<EncodedExample>(sequences);
        for (int s = 0; s < sequences; s++)
        {
            var chosen = taskIds.OrderBy(_ => rng.Next()).Take(pack);
            result.Add(encoder.Pack(chosen.Select(t => byTask[t][next[t]++ % byTask[t].Length]).ToList()));
        }
        return result;
    }

    /// <summary>Gate accuracy per task over every held-out example (batches of one task; exact decision counts).</summary>
    private static Dictionary<string, double> AccuracyByTask(MeteoraModel m, IReadOnlyList<EncodedExample> eval, IReadOnlyList<string> names,
        int batchSize, int padId, Device device, double lambda)
    {
        using var noGrad = no_grad();
        m.Model.eval();
        var result = new Dictionary<string, double>();
        foreach (var group in eval.GroupBy(e => e.Task).OrderBy(g => g.Key))
        {
            double right = 0; long decisions = 0;
            foreach (var chunk in group.Chunk(batchSize))
            {
                using var scope = NewDisposeScope();
                using var batch = TrainingBatch.Collate(chunk, padId, device);
                var v = MeteoraLoss.Compute(m, batch, lambda);
                right += v.Correct.item<double>();
                decisions += (long)v.Decisions.item<double>();
            }
            result[names[group.Key]] = decisions > 0 ? right / decisions : double.NaN;
        }
        return result;
    }

    /// <summary>
    /// Round-robin over tasks (each task's examples in their order): any prefix holds the tasks as evenly as their
    /// sizes allow, so a limited evaluation measures every task instead of the first few.
    /// </summary>
    internal static List<EncodedExample> Interleave(IReadOnlyList<EncodedExample> examples)
    {
        var byTask = examples.GroupBy(e => e.Task).OrderBy(g => g.Key).Select(g => g.ToList()).ToList();
        var result = new List<EncodedExample>(examples.Count);
        for (int r = 0; result.Count < examples.Count; r++)
            foreach (var g in byTask)
                if (r < g.Count) result.Add(g[r]);
        return result;
    }

    /// <summary>Every adapter needs a task folder of the same name and every task folder an adapter; lists both sides otherwise.</summary>
    public static void CheckTasks(string dataFolder, IReadOnlyList<string> adapterNames)
    {
        if (!Directory.Exists(dataFolder)) throw new MeteoraException($"{dataFolder}: data folder not found");
        var tasks = TaskData.TaskNames(dataFolder).ToHashSet();
        var noAdapter = tasks.Except(adapterNames).Order(StringComparer.Ordinal).ToList();
        var noTask = adapterNames.Except(tasks).Order(StringComparer.Ordinal).ToList();
        if (noAdapter.Count > 0 || noTask.Count > 0)
            throw new MeteoraException($"{dataFolder}: tasks and adapters must match by name — tasks without an adapter: [{string.Join(", ", noAdapter)}]; adapters without a task folder (with train.jsonl): [{string.Join(", ", noTask)}]");
    }
}
