using Meteora.Distributed;
using Meteora.Llama;
using Meteora.Moe;
using Meteora.Runtime;
using Meteora.Training;
using static TorchSharp.torch;

namespace Meteora.Benchmarking;

/// <summary>
/// Throughput and memory of a training benchmark, gate or LoRA (tokens over all <paramref name="World"/> ranks; memory
/// of rank 0's device); with phase timing asked for, where a step's time went (<paramref name="Phases"/>, from a
/// separate run synchronised at every phase boundary); <paramref name="Losses"/>: the training loss after each step of the
/// timed run (two runs of one configuration — say with and without CUDA graphs — can be compared step by step).
/// </summary>
public sealed record GateTrainingBenchResult(int Steps, int MeasuredSteps, int TokensPerStep, double SecondsPerStep,
    double TokensPerSecond, long? PeakDeviceBytes, long? BaselineDeviceBytes, int World = 1, IReadOnlyList<TrainingPhase>? Phases = null,
    IReadOnlyList<double>? Losses = null);

/// <summary>
/// One phase of a training step, averaged over the measured steps: seconds from the previous phase's end until the host
/// had issued it (<paramref name="IssuedSeconds"/>) and until the device had finished it (<paramref name="DoneSeconds"/>).
/// Issued close to done: the host is the bound; done well after issued: the device is.
/// </summary>
public sealed record TrainingPhase(string Name, double IssuedSeconds, double DoneSeconds);

/// <summary>
/// Gate training on a synthetic MeteoRA model (random base and adapters, random token sequences, task labels
/// cycling over the adapters) through the same <see cref="TrainingLoop"/> and <see cref="MeteoraObjective"/> as
/// <c>train-gate</c>: AdamW on float32 gates, gradients through the bfloat16 model. Throughput is measured after
/// the warm-up steps; device memory is sampled after every step. With a communicator of W ranks, each rank trains
/// <c>batch</c> sequences per step (global batch W × batch), data-parallel.
/// </summary>
public static class GateTrainingBenchmark
{
    public static GateTrainingBenchResult Run(LlamaConfig config, int adapters, int rank, int seqLen, int batch, int steps,
        int warmupSteps, Device device, ScalarType dtype, Action<string>? log = null, ICommunicator? communicator = null, bool phases = false, bool? cudaGraphs = null)
    {
        int world = communicator?.WorldSize ?? 1;
        long? baseline = device.type == TorchSharp.DeviceType.CUDA ? CudaRuntime.DeviceUsedBytes() : null;
        var loras = SyntheticAdapters.Create(config, adapters, rank, ProjectionSite.AllNames, seed: 1);
        log?.Invoke($"built {adapters} random rank-{rank} adapters");
        using var m = MeteoraModel.Build(factory =>
        {
            var lm = new LlamaForCausalLM(config, dtype, device, factory);
            lm.InitializeRandom(seed: 0);
            return lm;
        }, loras, ProjectionSite.AllNames, device, dtype);
        m.Configure(topK: 2);
        var objective = new MeteoraObjective(m, 50, trainAdapters: false, baseModel: null, adapterPaths: new string?[adapters]);
        objective.InitializeGates("small", 0);

        return TrainingThroughput.Measure(objective, config.VocabSize, adapters, seqLen, batch, steps, warmupSteps, device, baseline, communicator, phases, cudaGraphs, log);
    }
}
