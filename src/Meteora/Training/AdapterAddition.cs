using Meteora.Data;
using Meteora.Generation;
using Meteora.IO;
using Meteora.Llama;
using Meteora.Lora;
using Meteora.Moe;
using Meteora.Reporting;
using Meteora.Tokenization;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>Settings of <c>add-adapter</c> beyond the training loop's.</summary>
public sealed record AdapterAdditionOptions
{
    /// <summary>Learning rate of the old gate rows (0: frozen; at most the learning rate); follows the same schedule.</summary>
    public double OldRowsLr { get; init; }
    /// <summary>Replayed old-task examples per new-task example (split evenly over the old tasks in the data folder).</summary>
    public double ReplayFraction { get; init; } = 1.0;
    public double GateLossWeight { get; init; } = 50;
    /// <summary>"small" or "normal", as train-gate's --gate-init, for the new rows.</summary>
    public string GateInit { get; init; } = "small";
    /// <summary>Share of each task's train.jsonl held out for evaluation.</summary>
    public double EvalFraction { get; init; } = 0.1;
    /// <summary>
    /// After training, scale the new row of every gate by the factor (0 … 2) with the best balanced top-1 accuracy of
    /// the held-out decisions, every task counted equally (<c>--calibrate</c>, docs/TRAINING.md; needs
    /// <see cref="EvalFraction"/> &gt; 0).
    /// </summary>
    public bool Calibrate { get; init; }
}

/// <summary>What <c>add-adapter</c> did: the training outcome, which old tasks it replayed and how much.</summary>
public sealed record AdapterAdditionResult(TrainingOutcome Outcome, string Added, int NewIndex, IReadOnlyDictionary<string, int> Replayed,
    int NewExamples, IReadOnlyDictionary<string, double> FinalEval, IReadOnlyList<string> NotReplayed);

/// <summary>
/// <c>add-adapter</c>: grows a trained MeteoRA checkpoint by one adapter without retraining from the start. Every
/// gate gets one more row (initialised as <c>train-gate</c> does; projections the old gates did not have get whole
/// new gates), the old rows start from the trained gates and move at <see cref="AdapterAdditionOptions.OldRowsLr"/>
/// (0: frozen), and training sees the new task's data plus a replay sample of whichever old tasks the data folder
/// holds, with the usual MeteoRA loss. The new checkpoint lists the old adapters in their order, the new one last.
/// </summary>
public static class AdapterAddition
{
    /// <summary>
    /// Grows the checkpoint in <paramref name="meteoraFolder"/> (over <paramref name="baseFolder"/>) by the PEFT adapter
    /// <paramref name="added"/>, training on <paramref name="dataFolder"/>'s task of the same name plus replay of the
    /// old tasks found there, and writes the new checkpoint to <paramref name="outDir"/> (resumable like every trainer).
    /// </summary>
    public static AdapterAdditionResult Add(string baseFolder, string meteoraFolder, (string Name, string Folder) added, string dataFolder,
        string outDir, AdapterAdditionOptions add, TrainingOptions options, Device device, ScalarType dtype,
        ITrainingProgress? progress = null, CancellationToken cancel = default)
    {
        options.Validate();
        progress ??= new SilentProgress();
        if (!(add.OldRowsLr >= 0 && add.OldRowsLr <= options.LearningRate))
            throw new MeteoraException($"--old-rows-lr: {add.OldRowsLr} must be between 0 and --lr ({options.LearningRate})");
        if (!(add.ReplayFraction >= 0 && add.ReplayFraction <= 100)) throw new MeteoraException($"--replay-fraction: {add.ReplayFraction} must be between 0 and 100");
        if (add.EvalFraction is < 0 or >= 1) throw new MeteoraException($"--eval-fraction: {add.EvalFraction} must be in [0, 1)");
        if (add.Calibrate && add.EvalFraction == 0) throw new MeteoraException("--calibrate fits on held-out examples: --eval-fraction must be above 0");
        var old = MeteoraCheckpointConfig.Load(meteoraFolder);
        if (old.Adapters.Any(a => a.Name == added.Name))
            throw new MeteoraException($"{Path.Combine(meteoraFolder, MeteoraCheckpointConfig.FileName)}: an adapter named '{added.Name}' is already in the checkpoint");
        if (Path.GetFullPath(meteoraFolder).TrimEnd('/') == Path.GetFullPath(outDir).TrimEnd('/'))
            throw new MeteoraException($"--out: {outDir} is the checkpoint itself; write the grown checkpoint to another folder");
        var oldNames = old.Adapters.Select(a => a.Name).ToList();
        var (replayTasks, notReplayed) = CheckData(dataFolder, added.Name, oldNames);

        var baseConfig = LlamaConfig.Load(baseFolder);
        using var tokenizer = HfTokenizer.Load(baseFolder);
        int? eos = SpecialTokens.TrainingEos(baseConfig, tokenizer);
        var encoder = new SequenceEncoder(tokenizer, options.MaxSeqLen, options.ResponseOnlyFor(gates: true), eos);
        int newIndex = oldNames.Count;

        // The new task's examples, then an even replay sample of the old tasks present, each split train / held-out.
        var train = new List<EncodedExample>();
        var eval = new List<EncodedExample>();
        var rng = new Random(unchecked(options.Seed * 17 + 5));
        var newRows = Split(TaskData.ReadTrain(Path.Combine(dataFolder, added.Name)), add.EvalFraction, rng);
        train.AddRange(newRows.Train.Select((r, i) => encoder.Encode(r, newIndex, InContextExamples.ContextFor(newIndex * 1_000_000 + i, options))));
        var trainRows = newRows.Train.Select(r => (r, newIndex)).ToList();   // (example, task) of every training row, for restated lists
        eval.AddRange(newRows.Held.Select(r => encoder.Encode(r, newIndex)));
        int replayTotal = (int)Math.Round(add.ReplayFraction * newRows.Train.Count);
        var replayed = new Dictionary<string, int>();
        for (int t = 0; t < replayTasks.Count; t++)
        {
            int task = oldNames.IndexOf(replayTasks[t]);
            var rows = Split(TaskData.ReadTrain(Path.Combine(dataFolder, replayTasks[t])), add.EvalFraction, rng);
            int take = Math.Min(rows.Train.Count, replayTotal / replayTasks.Count + (t < replayTotal % replayTasks.Count ? 1 : 0));
            train.AddRange(rows.Train.Take(take).Select((r, i) => encoder.Encode(r, task, InContextExamples.ContextFor(task * 1_000_000 + i, options))));
            trainRows.AddRange(rows.Train.Take(take).Select(r => (r, task)));
            eval.AddRange(rows.Held.Select(r => encoder.Encode(r, task)));
            replayed[replayTasks[t]] = take;
        }
        if (options.RestateShare > 0)   // as train-gate: restated lists of the new and the replayed tasks' problems
        {
            int restated = RestatedLists.Replace(train, trainRows, encoder, options);
            progress.Message($"restated lists: {restated} of {train.Count} training rows");
        }
        eval = GateTrainer.Interleave(eval);
        progress.Message($"adding '{added.Name}' as adapter {newIndex}: {newRows.Train.Count} new-task examples; replaying " +
            (replayed.Count == 0 ? "nothing" : string.Join(", ", replayed.Select(kv => $"{kv.Key} {kv.Value}"))) +
            (notReplayed.Count > 0 ? $"; not in the data, not replayed: {string.Join(", ", notReplayed)}" : ""));

        var adapters = MeteoraCheckpoint.LoadAdapters(meteoraFolder, old, baseConfig);
        try
        {
            adapters.Add(LoraAdapter.Load(added.Folder, baseConfig, added.Name));
        }
        catch
        {
            adapters.ForEach(a => a.Dispose());
            throw;
        }
        var newTargets = LoraAdapter.TargetNames([adapters[^1]]);
        var targets = ProjectionSite.AllNames.Where(n => old.TargetModules.Contains(n) || newTargets.Contains(n)).ToList();
        using var m = MeteoraModel.Build(baseFolder, adapters, targets, device, dtype);
        m.Configure(Math.Min(old.TopK, adapters.Count), old.Temperature, MixingStrategy.Dense);
        var paths = old.Adapters.Select(a => a.Path is null ? null : MeteoraCheckpointConfig.Resolve(meteoraFolder, a.Path))
            .Append(Path.GetFullPath(added.Folder)).ToList();
        string? baseModel = old.BaseModel is null ? Path.GetFullPath(baseFolder) : MeteoraCheckpointConfig.Resolve(meteoraFolder, old.BaseModel);
        var objective = new MeteoraObjective(m, add.GateLossWeight, trainAdapters: false, baseModel, paths);
        objective.InitializeGates(add.GateInit, options.Seed);
        int grown = CopyOldRows(m, Path.Combine(meteoraFolder, MeteoraCheckpoint.GatesFile), oldNames.Count);
        if (grown < m.Projections.Count)
            progress.Message($"{m.Projections.Count - grown} projections had no gate before (the new adapter adapts them): their gates start fresh");
        objective.SlowRows(oldNames.Count, add.OldRowsLr / options.LearningRate);
        int padId = SpecialTokens.PadId(baseConfig, eos);
        var loop = new TrainingLoop(objective, options, outDir, padId, device, progress);
        var outcome = loop.Run(train, eval.Count > 0 ? eval : null, cancel);
        string metrics = Path.Combine(outDir, "metrics.jsonl");
        if (add.Calibrate && outcome == TrainingOutcome.Completed && eval.Count > 0)
        {
            var (factors, before, after) = NewRowCalibration.Apply(m, eval, newIndex, padId, device, options.BatchSize);
            objective.SaveArtifact(outDir);
            var sorted = factors.Values.Order().ToList();
            progress.Message($"--calibrate: new-row factors {sorted[0]:0.00}…{sorted[^1]:0.00} (median {sorted[sorted.Count / 2]:0.00}) over {factors.Count} projections; " +
                $"held-out balanced decision accuracy {before:P1} → {after:P1}");
            var line = new Dictionary<string, object> { ["step"] = options.Steps ?? 0, ["kind"] = "calibration", ["balanced_before"] = Math.Round(before, 6), ["balanced_after"] = Math.Round(after, 6) };
            foreach (var (key, f) in factors) line[key] = f;
            File.AppendAllText(metrics, System.Text.Json.JsonSerializer.Serialize(line) + "\n");
        }
        if (File.Exists(metrics))
            LossCurvePlot.Write(metrics, Path.Combine(outDir, "loss_curve.png"), ["lm_loss", "gate_loss"], $"add-adapter: {added.Name} as adapter {newIndex}");
        return new AdapterAdditionResult(outcome, added.Name, newIndex, replayed, newRows.Train.Count, loop.WrittenEvaluation, notReplayed);
    }

    /// <summary>The data folder must hold the new task; every other task in it must be one of the checkpoint's adapters.</summary>
    private static (List<string> Replay, List<string> NotReplayed) CheckData(string dataFolder, string added, IReadOnlyList<string> oldNames)
    {
        if (!Directory.Exists(dataFolder)) throw new MeteoraException($"{dataFolder}: data folder not found");
        var tasks = TaskData.TaskNames(dataFolder);
        if (!tasks.Contains(added)) throw new MeteoraException($"{dataFolder}: no task folder '{added}' (with train.jsonl) for the new adapter");
        var strangers = tasks.Where(t => t != added && !oldNames.Contains(t)).ToList();
        if (strangers.Count > 0)
            throw new MeteoraException($"{dataFolder}: task folders without an adapter in the checkpoint or --adapter: [{string.Join(", ", strangers)}]");
        var replay = tasks.Where(t => t != added).ToList();
        return (replay, oldNames.Except(replay).ToList());
    }

    private static (List<TaskExample> Train, List<TaskExample> Held) Split(List<TaskExample> rows, double evalFraction, Random rng)
    {
        var (train, held) = HeldOut.Split(rows.Count, evalFraction, rng);
        return (train.Select(i => rows[i]).ToList(), held.Select(i => rows[i]).ToList());
    }

    /// <summary>Copies the trained gates (old N, in) into rows [0, N) of every projection that had one; returns how many had.</summary>
    private static int CopyOldRows(MeteoraModel m, string gatesPath, int oldCount)
    {
        using var file = SafeTensorsFile.Open(gatesPath);
        using var noGrad = no_grad();
        int copied = 0;
        foreach (var p in m.Projections)
        {
            string key = MeteoraCheckpoint.GateKey(p.Site.Key);
            if (!file.Entries.TryGetValue(key, out var entry)) continue;
            if (entry.Shape.Length != 2 || entry.Shape[0] != oldCount || entry.Shape[1] != p.Site.InFeatures)
                throw new MeteoraException($"{gatesPath}: gate '{key}' has shape {entry.ShapeText}, expected ({oldCount}, {p.Site.InFeatures})");
            using var old = file.Load(key, ScalarType.Float32);
            p.moe_gate.narrow(0, 0, oldCount).copy_(old);
            copied++;
        }
        m.SyncGates();
        return copied;
    }
}
