using System.Diagnostics;
using Meteora.Distributed;
using Meteora.Llama;
using Meteora.Moe;
using Meteora.Runtime;
using Meteora.Training;
using static TorchSharp.torch;

namespace Meteora.Benchmarking;

/// <summary>Throughput and memory of gate training (tokens over all <paramref name="World"/> ranks; memory of rank 0's device).</summary>
public sealed record GateTrainingBenchResult(int Steps, int MeasuredSteps, int TokensPerStep, double SecondsPerStep,
    double TokensPerSecond, long? PeakDeviceBytes, long? BaselineDeviceBytes, int World = 1);

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
        int warmupSteps, Device device, ScalarType dtype, Action<string>? log = null, ICommunicator? communicator = null)
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

        var rng = new Random(5);
        var data = Enumerable.Range(0, batch * world * steps).Select(i =>
        {
            var ids = Enumerable.Range(0, seqLen).Select(_ => rng.Next(config.VocabSize)).ToArray();
            return new EncodedExample(ids, ids.Select((_, t) => t + 1 < seqLen).ToArray(), i % adapters, false);
        }).ToList();
        // Micro-batch `batch` per rank; the global batch batch × world is one step's rows over all ranks.
        var options = new TrainingOptions { Steps = steps, BatchSize = batch, GradAccum = world, LearningRate = 5e-4, WeightDecay = 0.01, ClipNorm = 0.3, Seed = 1 };
        var progress = new StepClock(device);
        string outDir = Path.Combine(Path.GetTempPath(), $"meteora-bench-{Guid.NewGuid():N}");
        try
        {
            new TrainingLoop(new NoArtifact(objective), options, outDir, 0, device, progress, communicator).Run(data, null);
        }
        finally
        {
            if (Directory.Exists(outDir)) Directory.Delete(outDir, true);
        }
        var measured = progress.Times.Skip(warmupSteps).ToList();
        double perStep = measured.Count > 1 ? (measured[^1] - measured[0]) / (measured.Count - 1) : double.NaN;
        int tokens = batch * world * seqLen;
        return new GateTrainingBenchResult(steps, measured.Count - 1, tokens, perStep, tokens / perStep, progress.PeakBytes, baseline, world);
    }

    /// <summary>Records when each step ended (device synchronised) and the device memory in use then.</summary>
    private sealed class StepClock(Device device) : ITrainingProgress
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        public List<double> Times { get; } = new();
        public long? PeakBytes { get; private set; }

        public void Step(int step, int totalSteps, IReadOnlyDictionary<string, double> metrics, double tokensPerSecond, TimeSpan eta)
        {
            DeviceClock.Synchronize(device);
            Times.Add(_clock.Elapsed.TotalSeconds);
            if (device.type == TorchSharp.DeviceType.CUDA && CudaRuntime.DeviceUsedBytes() is { } used)
                PeakBytes = Math.Max(PeakBytes ?? 0, used);
        }

        public void Start(int totalSteps, int startStep) { }
        public void Evaluation(int step, IReadOnlyDictionary<string, double> metrics) { }
        public void Message(string text) { }
        public void Stop() { }
    }

    /// <summary>The gate objective without writing a checkpoint folder at the end.</summary>
    private sealed class NoArtifact(ITrainingObjective inner) : ITrainingObjective
    {
        public IReadOnlyList<TorchSharp.Modules.Parameter> Parameters => inner.Parameters;
        public (Tensor Loss, IReadOnlyDictionary<string, double> Parts) Loss(TrainingBatch batch, bool training, LossCounts? normalizers = null) => inner.Loss(batch, training, normalizers);
        public IEnumerable<KeyValuePair<string, Tensor>> TrainableState() => inner.TrainableState();
        public void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state) => inner.LoadTrainableState(state);
        public void SaveArtifact(string folder) { }
    }
}
