namespace Meteora.Training;

/// <summary>Optimiser, schedule, batching, evaluation and checkpoint settings shared by the trainers.</summary>
public sealed record TrainingOptions
{
    public double LearningRate { get; init; } = 2e-4;
    public double WeightDecay { get; init; } = 0.0;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double AdamEps { get; init; } = 1e-8;
    /// <summary>Warm-up as a share of all steps (used when <see cref="WarmupSteps"/> is null).</summary>
    public double WarmupRatio { get; init; } = 0.03;
    public int? WarmupSteps { get; init; }
    public double MinLrRatio { get; init; } = 0.0;
    /// <summary>Optimiser steps; when null, derived from <see cref="Epochs"/>.</summary>
    public int? Steps { get; init; }
    public double Epochs { get; init; } = 1;
    public int BatchSize { get; init; } = 8;
    public int GradAccum { get; init; } = 1;
    public double ClipNorm { get; init; } = 1.0;
    public int MaxSeqLen { get; init; } = 512;
    /// <summary>
    /// LM loss on the response (and EOS) only — true — or on prompt and response — false. Null takes the trainer's
    /// default, <see cref="ResponseOnlyFor"/>: the same for the library and the CLI.
    /// </summary>
    public bool? ResponseOnly { get; init; }

    /// <summary>Task LoRAs (<c>train-lora</c>) learn the response only, as supervised fine-tuning does (PEFT / TRL).</summary>
    public const bool LoraResponseOnlyDefault = true;

    /// <summary>
    /// Gates (<c>train-gate</c>, <c>add-adapter</c>) learn with the LM loss over prompt and response, as DESIGN.md
    /// and the original MeteoRA training do (the gate loss covers every position either way).
    /// </summary>
    public const bool GateResponseOnlyDefault = false;

    /// <summary><see cref="ResponseOnly"/> if set, else the default for gate training or LoRA training.</summary>
    public bool ResponseOnlyFor(bool gates) => ResponseOnly ?? (gates ? GateResponseOnlyDefault : LoraResponseOnlyDefault);
    /// <summary>Sample every task equally often (smaller tasks cycled), instead of the data's own mix.</summary>
    public bool Balance { get; init; }
    /// <summary>
    /// Micro-batches of sequences of similar length (<see cref="DataOrder"/>): far less padding when examples'
    /// lengths differ a lot (restated lists beside plain examples), at the cost of batches less mixed by length.
    /// </summary>
    public bool LengthBuckets { get; init; }
    public int Seed { get; init; } = 42;
    /// <summary>
    /// Each step captured once as a CUDA graph and replayed (<see cref="GraphedTrainingStep"/>): true = always (an error
    /// where it cannot be), false = never, null = where it applies and padding every batch to the longest example adds
    /// at most half the tokens. Applies on CUDA to objectives with a device-side loss (gate training), one micro-batch
    /// per step, one process, no rehearsal rows.
    /// </summary>
    public bool? CudaGraphs { get; init; }
    /// <summary>Evaluate every N optimiser steps (0 = only at the end).</summary>
    public int EvalEvery { get; init; } = 0;
    /// <summary>At most this many evaluation examples per evaluation.</summary>
    public int EvalLimit { get; init; } = 256;
    /// <summary>
    /// Early stopping's choice: the artifact holds the trainable weights of the evaluation (every
    /// <see cref="EvalEvery"/> steps, and before the first) with the lowest held-out loss, not the last step's. Needs
    /// held-out examples that are not the test set: <c>--eval-fraction</c>.
    /// </summary>
    public bool KeepBest { get; init; }
    /// <summary>Write a resumable checkpoint every N steps (0 = never, except on interruption).</summary>
    public int CheckpointEvery { get; init; } = 0;
    public bool Resume { get; init; }
    /// <summary>Stop after this many steps as if interrupted (writes a checkpoint); for tests and staged runs.</summary>
    public int? StopAfter { get; init; }
    /// <summary>
    /// Rehearsal: rows of generic text (the base's pretraining corpus) added to every micro-batch as a second loss
    /// term, so a LoRA learns its task without unlearning what the base could do (0 = off; LoRA training only).
    /// </summary>
    public int ReplayRows { get; init; }
    /// <summary>Tokens per rehearsal row.</summary>
    public int ReplaySeqLen { get; init; } = 1024;
    /// <summary>Weight of the rehearsal loss (mean over its tokens) beside the task loss (mean over its tokens).</summary>
    public double ReplayWeight { get; init; } = 1.0;
    /// <summary>
    /// Share of training examples placed after a stretch of generic text (<see cref="InContextExamples"/>; LoRA and
    /// gate training): adapters and gates learn to serve a prompt wherever it sits in a document, not only right after
    /// BOS (0 = off).
    /// </summary>
    public double InContextShare { get; init; }
    /// <summary>Longest generic text put before an example, in characters (each example draws a length up to it).</summary>
    public int InContextChars { get; init; } = 512;
    /// <summary>
    /// Share of training examples turned into restated-list sequences (<see cref="RestatedLists"/>: problems listed,
    /// then restated one per line with their answers, the restated lines in the loss; LoRA and gate training): the
    /// layout of a prompt holding several problems answered line by line (0 = off).
    /// </summary>
    public double RestateShare { get; init; }
    /// <summary>Most problems per list of a restated-list sequence (each list has 2…this many).</summary>
    public int RestateItems { get; init; } = 3;
    /// <summary>
    /// LM-loss weight of a restated problem's tokens (its answer's weigh 1). Copying a listed problem is most of a
    /// restated sequence's tokens; at weight 1 it outweighed the answers sixfold and the harder tasks' adapters
    /// learnt their answers far less (docs/RESULTS.md).
    /// </summary>
    public double RestateCopyWeight { get; init; } = 0.1;

    /// <summary>Optimiser steps for an epoch of <paramref name="examples"/> examples.</summary>
    public int TotalSteps(int examples) =>
        Steps ?? Math.Max(1, (int)Math.Ceiling(Epochs * examples / (double)(BatchSize * GradAccum)));

    public int Warmup(int totalSteps) => WarmupSteps ?? (int)Math.Round(WarmupRatio * totalSteps);

    /// <summary>Range checks with one-line errors naming the option.</summary>
    public void Validate()
    {
        void Check(bool ok, string message) { if (!ok) throw new MeteoraException(message); }
        Check(LearningRate > 0 && LearningRate < 10, $"--lr: {LearningRate} is out of range (0, 10)");
        Check(WeightDecay >= 0, $"--weight-decay: {WeightDecay} must be ≥ 0");
        Check(Steps is null or > 0, $"--steps: {Steps} must be ≥ 1");
        Check(Epochs > 0, $"--epochs: {Epochs} must be > 0");
        Check(BatchSize is > 0 and <= 65536, $"--batch-size: {BatchSize} is out of range (1…65536)");
        Check(GradAccum is > 0 and <= 65536, $"--grad-accum: {GradAccum} is out of range (1…65536)");
        Check(ClipNorm >= 0, $"--clip: {ClipNorm} must be ≥ 0 (0 disables clipping)");
        Check(MaxSeqLen is >= 2 and <= 1_048_576, $"--max-seq-len: {MaxSeqLen} is out of range (2…1048576)");
        Check(WarmupSteps is null or >= 0, $"--warmup-steps: {WarmupSteps} must be ≥ 0");
        Check(WarmupRatio is >= 0 and < 1, $"--warmup-ratio: {WarmupRatio} must be in [0, 1)");
        Check(EvalEvery >= 0 && CheckpointEvery >= 0, "--eval-every and --checkpoint-every must be ≥ 0");
        Check(EvalLimit is >= 1 and <= 1_048_576, $"--eval-limit: {EvalLimit} is out of range (1…1048576)");
        Check(ReplayRows is >= 0 and <= 65536, $"--replay: {ReplayRows} is out of range (0…65536)");
        Check(ReplaySeqLen is >= 2 and <= 1_048_576, $"--replay-len: {ReplaySeqLen} is out of range (2…1048576)");
        Check(ReplayWeight is > 0 and <= 1000, $"--replay-weight: {ReplayWeight} is out of range (0, 1000]");
        Check(InContextShare is >= 0 and <= 1, $"--in-context: {InContextShare} must be in [0, 1]");
        Check(InContextChars is >= 16 and <= 1_048_576, $"--in-context-chars: {InContextChars} is out of range (16…1048576)");
        Check(RestateShare is >= 0 and <= 1, $"--restate: {RestateShare} must be in [0, 1]");
        Check(RestateItems is >= 2 and <= 64, $"--restate-items: {RestateItems} is out of range (2…64)");
        Check(RestateCopyWeight is >= 0 and <= 1, $"--restate-copy-weight: {RestateCopyWeight} must be in [0, 1]");
    }
}
