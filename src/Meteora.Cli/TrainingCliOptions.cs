using System.CommandLine;
using Meteora.Training;

namespace Meteora.Cli;

/// <summary>Optimiser, schedule, batching and checkpoint options shared by train-lora and train-gate.</summary>
public sealed class TrainingCliOptions
{
    public Option<double> Lr { get; }
    public Option<double> WeightDecay { get; }
    public Option<double> Clip { get; }
    public Option<int?> Steps { get; } = new("--steps") { Description = "optimiser steps (default: from --epochs)" };
    public Option<double> Epochs { get; } = new("--epochs") { Description = "passes over the training data when --steps is not given", DefaultValueFactory = _ => 1 };
    public Option<int> BatchSize { get; } = new("--batch-size") { Description = "sequences per micro-batch (at most, per GPU under torchrun)", DefaultValueFactory = _ => 8 };
    public Option<int> GradAccum { get; } = new("--grad-accum") { Description = "micro-batches per optimiser step: a step's global batch is --batch-size × --grad-accum sequences, shared by the GPUs under torchrun", DefaultValueFactory = _ => 1 };
    public Option<int> MaxSeqLen { get; } = new("--max-seq-len") { Description = "longer sequences are cut (and counted)", DefaultValueFactory = _ => 512 };
    public Option<int?> WarmupSteps { get; } = new("--warmup-steps") { Description = "linear warm-up steps (default: --warmup-ratio of all steps)" };
    public Option<double> WarmupRatio { get; } = new("--warmup-ratio") { Description = "warm-up share of all steps", DefaultValueFactory = _ => 0.03 };
    public Option<int> Seed { get; } = new("--seed") { Description = "seed for initialisation, data order and dropout", DefaultValueFactory = _ => 42 };
    public Option<int> EvalEvery { get; } = new("--eval-every") { Description = "evaluate every N steps (0: start and end only)", DefaultValueFactory = _ => 0 };
    public Option<int> EvalLimit { get; } = new("--eval-limit") { Description = "at most N evaluation examples", DefaultValueFactory = _ => 256 };
    public Option<int> CheckpointEvery { get; } = new("--checkpoint-every") { Description = "write a resumable checkpoint every N steps (0: only when interrupted)", DefaultValueFactory = _ => 0 };
    public Option<bool> Resume { get; } = new("--resume") { Description = "continue from OUT/checkpoint exactly" };
    public Option<int?> StopAfter { get; } = new("--stop-after") { Description = "stop after N steps with a checkpoint, as if interrupted" };
    public Option<bool> KeepBest { get; } = new("--keep-best") { Description = "write the weights of the evaluation (every --eval-every steps) with the lowest held-out loss, not the last step's" };
    public Option<string> CudaGraph { get; } = CudaGraphOption();

    /// <summary>
    /// <c>--cuda-graph auto|on|off</c>: each training step captured once as a CUDA graph and replayed
    /// (<see cref="TrainingOptions.CudaGraphs"/>); shared with <c>bench train-gate</c>.
    /// </summary>
    public static Option<string> CudaGraphOption()
    {
        var o = new Option<string>("--cuda-graph")
        {
            Description = "replay each step as one CUDA graph (batches padded to the longest example): auto (on CUDA where it applies and padding adds at most half the tokens), on, off",
            DefaultValueFactory = _ => "auto",
        };
        o.AcceptOnlyFromAmong("auto", "on", "off");
        return o;
    }

    /// <summary>The <c>--cuda-graph</c> value as <see cref="TrainingOptions.CudaGraphs"/>: null for auto.</summary>
    public static bool? CudaGraphs(string value) => value switch { "on" => true, "off" => false, _ => null };

    public Option<bool> LengthBuckets { get; } = new("--length-buckets") { Description = "micro-batches of sequences of similar length (within 2×): less padding when lengths differ a lot" };

    public TrainingCliOptions(double lr, double weightDecay, double clip)
    {
        Lr = new("--lr") { Description = "peak learning rate (AdamW)", DefaultValueFactory = _ => lr };
        WeightDecay = new("--weight-decay") { Description = "AdamW decoupled weight decay", DefaultValueFactory = _ => weightDecay };
        Clip = new("--clip") { Description = "gradient-norm clipping (0: off)", DefaultValueFactory = _ => clip };
    }

    /// <summary>Adds the options to <paramref name="c"/>; <c>--cuda-graph</c> only where <paramref name="cudaGraph"/> (gate training: its loss needs no read-back).</summary>
    public void AddTo(Command c, bool cudaGraph = false)
    {
        foreach (var o in new Option[] { Lr, WeightDecay, Clip, Steps, Epochs, BatchSize, GradAccum, MaxSeqLen, WarmupSteps, WarmupRatio, Seed, EvalEvery, EvalLimit, CheckpointEvery, Resume, StopAfter, LengthBuckets, KeepBest })
            c.Options.Add(o);
        if (cudaGraph) c.Options.Add(CudaGraph);
    }

    /// <summary>The options as given; <c>--cuda-graph on</c> off a CUDA <paramref name="device"/> is refused here, before anything is read or written.</summary>
    public TrainingOptions Read(ParseResult p, bool? responseOnly, TorchSharp.torch.Device device)
    {
        // A command without --cuda-graph (AddTo's choice) never graphs.
        bool? graphs = p.CommandResult.Command.Options.Contains(CudaGraph) ? CudaGraphs(p.GetValue(CudaGraph)!) : false;
        if (graphs == true && device.type != TorchSharp.DeviceType.CUDA)
            throw new MeteoraException($"--cuda-graph on: not on a CUDA device (--device {device})");
        return new()
        {
            LearningRate = p.GetValue(Lr), WeightDecay = p.GetValue(WeightDecay), ClipNorm = p.GetValue(Clip),
            Steps = p.GetValue(Steps), Epochs = p.GetValue(Epochs), BatchSize = p.GetValue(BatchSize),
            GradAccum = p.GetValue(GradAccum), MaxSeqLen = p.GetValue(MaxSeqLen), WarmupSteps = p.GetValue(WarmupSteps),
            WarmupRatio = p.GetValue(WarmupRatio), Seed = p.GetValue(Seed), EvalEvery = p.GetValue(EvalEvery),
            EvalLimit = p.GetValue(EvalLimit), CheckpointEvery = p.GetValue(CheckpointEvery), Resume = p.GetValue(Resume),
            StopAfter = p.GetValue(StopAfter), LengthBuckets = p.GetValue(LengthBuckets), ResponseOnly = responseOnly,
            KeepBest = p.GetValue(KeepBest), CudaGraphs = graphs,
        };
    }
}
