using System.Diagnostics;
using Meteora.Distributed;
using Meteora.Runtime;
using Meteora.Training;
using static TorchSharp.torch;

namespace Meteora.Benchmarking;

/// <summary>
/// The timing half of the training benchmarks: random token sequences through the real <see cref="TrainingLoop"/>
/// (data-parallel with a communicator: <c>batch</c> sequences per rank and step), the device synchronised after
/// every step, throughput over the steps after the warm-up, device memory sampled after every step.
/// </summary>
internal static class TrainingThroughput
{
    public static GateTrainingBenchResult Measure(ITrainingObjective objective, int vocab, int tasks, int seqLen, int batch, int steps,
        int warmupSteps, Device device, long? baselineBytes, ICommunicator? communicator)
    {
        int world = communicator?.WorldSize ?? 1;
        var rng = new Random(5);
        var data = Enumerable.Range(0, batch * world * steps).Select(i =>
        {
            var ids = Enumerable.Range(0, seqLen).Select(_ => rng.Next(vocab)).ToArray();
            return new EncodedExample(ids, ids.Select((_, t) => t + 1 < seqLen).ToArray(), i % tasks, false);
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
        return new GateTrainingBenchResult(steps, measured.Count - 1, tokens, perStep, tokens / perStep, progress.PeakBytes, baselineBytes, world);
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

    /// <summary>The objective without writing an artifact at the end.</summary>
    private sealed class NoArtifact(ITrainingObjective inner) : ITrainingObjective
    {
        public IReadOnlyList<TorchSharp.Modules.Parameter> Parameters => inner.Parameters;
        public (Tensor Loss, IReadOnlyDictionary<string, double> Parts) Loss(TrainingBatch batch, bool training, LossCounts? normalizers = null) => inner.Loss(batch, training, normalizers);
        public IEnumerable<KeyValuePair<string, Tensor>> TrainableState() => inner.TrainableState();
        public void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state) => inner.LoadTrainableState(state);
        public void AfterBackward() => inner.AfterBackward();
        public void AfterOptimizerStep() => inner.AfterOptimizerStep();
        public string Description => inner.Description;
        public void SaveArtifact(string folder) { }
    }
}
