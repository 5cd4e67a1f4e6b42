using Meteora.Data;
using Meteora.Distributed;
using Meteora.Generation;
using Meteora.Llama;
using Meteora.Lora;
using Meteora.Tokenization;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>Result of a LoRA training run.</summary>
/// <param name="FinalEval">the evaluation of the written weights: the last step's, or with --keep-best the kept step's</param>
public sealed record LoraTrainingResult(TrainingOutcome Outcome, int TrainExamples, int Truncated,
    IReadOnlyDictionary<string, double>? InitialEval, IReadOnlyDictionary<string, double> FinalEval);

/// <summary>
/// <c>train-lora</c>: trains a new LoRA adapter on one task folder and writes it as a PEFT folder. The base
/// stays in its dtype (bfloat16 on GPU); adapter weights and AdamW state are float32.
/// </summary>
public static class LoraTrainer
{
    /// <summary>
    /// One task folder (train.jsonl, optional test.jsonl), or a folder of task folders: then the union, each
    /// example tagged with its task index (sorted names) so that <c>--balance</c> can mix the tasks evenly — the
    /// paper's multi-task "LoRA-B" baseline.
    /// </summary>
    public static (List<(TaskExample Example, int Task)> Train, List<(TaskExample Example, int Task)>? Test) ReadData(string folder)
    {
        if (File.Exists(Path.Combine(folder, "train.jsonl")) || !Directory.Exists(folder))
            return (TaskData.ReadTrain(folder).Select(e => (e, 0)).ToList(), TaskData.ReadTestIfPresent(folder)?.Select(e => (e, 0)).ToList());
        var tasks = TaskData.TaskNames(folder).Select(t => Path.Combine(folder, t)).ToList();
        if (tasks.Count == 0) throw new MeteoraException($"{folder}: no train.jsonl, and no task folders with one");
        var train = tasks.SelectMany((d, i) => TaskData.ReadTrain(d).Select(e => (e, i))).ToList();
        var test = tasks.SelectMany((d, i) => (TaskData.ReadTestIfPresent(d) ?? []).Select(e => (e, i))).ToList();
        return (train, test.Count > 0 ? test : null);
    }

    /// <summary>
    /// Splits each task's examples into training and held-out ones: a seeded share (at least one of a task with two
    /// or more), the rest kept in their order.
    /// </summary>
    internal static (List<(TaskExample Example, int Task)> Train, List<(TaskExample Example, int Task)> Held) HoldOut(
        IReadOnlyList<(TaskExample Example, int Task)> rows, double fraction, int seed)
    {
        var train = new List<(TaskExample, int)>();
        var held = new List<(TaskExample, int)>();
        foreach (var task in rows.GroupBy(r => r.Task).OrderBy(g => g.Key))
        {
            var items = task.ToList();
            var (kept, heldOut) = HeldOut.Split(items.Count, fraction, new Random(unchecked(seed * 31 + task.Key)));   // as train-gate splits
            held.AddRange(heldOut.Order().Select(i => items[i]));
            train.AddRange(kept.Order().Select(i => items[i]));
        }
        return (train, held);
    }

    /// <summary>Seed of the rehearsal documents (any fixed value: they are drawn from the corpus's distribution).</summary>
    public const int RehearsalSeed = 7_919;

    /// <summary>
    /// With <see cref="TrainingOptions.ReplayRows"/> &gt; 0: generic documents (<see cref="GenericCorpus"/>, the
    /// built-in base's pretraining text) of <see cref="TrainingOptions.ReplaySeqLen"/> tokens for rehearsal, enough
    /// that no row repeats in a run; otherwise null.
    /// </summary>
    public static GeneratedDocuments? Rehearsal(HfTokenizer tokenizer, TrainingOptions options, int eosId) =>
        options.ReplayRows <= 0 ? null
            : new GeneratedDocuments(tokenizer, 100_000, first: 0, RehearsalSeed, options.ReplaySeqLen, eosId);

    /// <summary>
    /// Trains an adapter shaped by <paramref name="lora"/> on <paramref name="taskFolder"/>'s train.jsonl over the base in
    /// <paramref name="baseFolder"/> and writes a PEFT folder (plus checkpoints and metrics) to <paramref name="outDir"/>.
    /// Stops cleanly (checkpoint kept) on <paramref name="cancel"/>. With a <paramref name="communicator"/> of several
    /// ranks, each rank calls this with the same arguments and trains its share of every step; rank 0 reports and writes.
    /// </summary>
    /// <param name="evalFraction">
    /// share of each task's train.jsonl held out as the run's evaluation (validation) set — what
    /// <see cref="TrainingOptions.KeepBest"/> chooses by; 0: evaluate on test.jsonl, if there is one
    /// </param>
    public static LoraTrainingResult Train(string baseFolder, string taskFolder, string outDir, LoraConfig lora,
        TrainingOptions options, Device device, ScalarType dtype, ITrainingProgress? progress = null,
        CancellationToken cancel = default, ICommunicator? communicator = null, double evalFraction = 0)
    {
        options.Validate();
        progress = SilentProgress.OnRankZero(progress, communicator?.Rank ?? 0);
        if (evalFraction is < 0 or >= 1) throw new MeteoraException($"--eval-fraction: {evalFraction} must be in [0, 1)");
        if (options.KeepBest && evalFraction == 0)
            throw new MeteoraException("--keep-best chooses among held-out training examples: give --eval-fraction (test.jsonl stays for the final evaluation)");
        var (train, test) = ReadData(taskFolder);
        if (evalFraction > 0) (train, test) = HoldOut(train, evalFraction, options.Seed);
        using var tokenizer = HfTokenizer.Load(baseFolder);
        var config = LlamaConfig.Load(baseFolder);
        int? eos = SpecialTokens.TrainingEos(config, tokenizer);
        var encoder = new SequenceEncoder(tokenizer, options.MaxSeqLen, options.ResponseOnlyFor(gates: false), eos);
        var trainEncoded = RestatedLists.EncodeAll(encoder, train, options, i => InContextExamples.ContextFor(i, options));
        var testEncoded = test?.Select(e => encoder.Encode(e.Example, e.Task)).ToList();
        int truncated = trainEncoded.Count(e => e.Truncated);
        if (truncated > 0) progress.Message($"truncated {truncated} of {trainEncoded.Count} training sequences to --max-seq-len {options.MaxSeqLen}");
        if (trainEncoded.All(e => e.LossTokens == 0))
            throw new MeteoraException($"{taskFolder}: no training tokens remain after truncation to {options.MaxSeqLen} (raise --max-seq-len)");

        lora = lora with { BaseModelNameOrPath = lora.BaseModelNameOrPath ?? Path.GetFullPath(baseFolder) };
        var sites = LoraAdapter.Sites(config).Where(lora.Targets).Select(s => s.Key).ToHashSet();
        using var lm = LlamaLoader.Load(baseFolder, device, dtype,
            LoraModel.Factory(lora, s => sites.Contains(s.Key), dtype, ScalarType.Float32, device));
        var objective = new LoraObjective(lm, lora);
        objective.Initialize(options.Seed);
        int padId = SpecialTokens.PadId(config, eos);
        var loop = new TrainingLoop(objective, options, outDir, padId, device, progress, communicator);
        var outcome = loop.Run(trainEncoded, testEncoded, cancel, Rehearsal(tokenizer, options, eos ?? config.EosTokenIds.FirstOrDefault(1)));
        return new LoraTrainingResult(outcome, trainEncoded.Count, truncated, loop.InitialEvaluation, loop.WrittenEvaluation);
    }
}
