using System.Diagnostics;
using Meteora.Distributed;
using Meteora.Runtime;
using Meteora.Training;
using static TorchSharp.torch;

namespace Meteora.Benchmarking;

/// <summary>
/// The timing half of the training benchmarks: random token sequences through the real <see cref="TrainingLoop"/>
/// (data-parallel with a communicator: <c>batch</c> sequences per rank and step), the device synchronised after
/// every step, throughput over the steps after the warm-up, device memory sampled after every step; optionally a
/// second run of the same steps timed phase by phase.
/// </summary>
internal static class TrainingThroughput
{
    public static GateTrainingBenchResult Measure(ITrainingObjective objective, int vocab, int tasks, int seqLen, int batch, int steps,
        int warmupSteps, Device device, long? baselineBytes, ICommunicator? communicator, bool phases = false, bool? cudaGraphs = null, Action<string>? log = null)
    {
        int world = communicator?.WorldSize ?? 1;
        var rng = new Random(5);
        var data = Enumerable.Range(0, batch * world * steps).Select(i =>
        {
            var ids = Enumerable.Range(0, seqLen).Select(_ => rng.Next(vocab)).ToArray();
            return new EncodedExample(ids, ids.Select((_, t) => t + 1 < seqLen).ToArray(), i % tasks, false);
        }).ToList();
        // Micro-batch `batch` per rank; the global batch batch × world is one step's rows over all ranks.
        var options = new TrainingOptions { Steps = steps, BatchSize = batch, GradAccum = world, LearningRate = 5e-4, WeightDecay = 0.01, ClipNorm = 0.3, Seed = 1, CudaGraphs = cudaGraphs };
        void RunLoop(StepClock clock)
        {
            string outDir = Path.Combine(Path.GetTempPath(), $"meteora-bench-{Guid.NewGuid():N}");
            try
            {
                new TrainingLoop(new NoArtifact(objective), options, outDir, 0, device, clock, communicator).Run(data, null);
            }
            finally
            {
                if (Directory.Exists(outDir)) Directory.Delete(outDir, true);
            }
        }
        var progress = new StepClock(device, null, log);
        RunLoop(progress);
        StepClock? phased = null;
        if (phases) RunLoop(phased = new StepClock(device, warmupSteps, null));   // a second run, synchronised at every phase boundary
        var measured = progress.Times.Skip(warmupSteps).ToList();
        double perStep = measured.Count > 1 ? (measured[^1] - measured[0]) / (measured.Count - 1) : double.NaN;
        int tokens = batch * world * seqLen;
        return new GateTrainingBenchResult(steps, measured.Count - 1, tokens, perStep, tokens / perStep, progress.PeakBytes, baselineBytes, world,
            phased?.PhaseMeans(), progress.Losses);
    }

    /// <summary>
    /// Records when each step ended (device synchronised) and the device memory in use then. With
    /// <c>phasesAfter</c> set it also times the loop's phases (<see cref="ITrainingProgress.Phase"/>) of the steps after
    /// that many warm-up steps: when the host had issued a phase, and when the device had finished it (synchronised at
    /// every boundary, so the phases no longer overlap and the step is slower than without).
    /// </summary>
    private sealed class StepClock(Device device, int? phasesAfter, Action<string>? log) : ITrainingProgress
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private readonly Dictionary<string, (double Host, double Done)> _phases = new();
        private readonly List<string> _order = new();
        private double _boundary;   // when the device finished the previous phase (or step)
        public List<double> Times { get; } = new();
        public List<double> Losses { get; } = new();
        public long? PeakBytes { get; private set; }

        public void Step(int step, int totalSteps, IReadOnlyDictionary<string, double> metrics, double tokensPerSecond, TimeSpan eta)
        {
            Losses.Add(metrics.GetValueOrDefault("loss", double.NaN));
            if (phasesAfter is not null) Phase("rest of step");
            DeviceClock.Synchronize(device);
            Times.Add(_boundary = _clock.Elapsed.TotalSeconds);
            if (device.type == TorchSharp.DeviceType.CUDA && CudaRuntime.DeviceUsedBytes() is { } used)
                PeakBytes = Math.Max(PeakBytes ?? 0, used);
        }

        public void Phase(string name)
        {
            if (phasesAfter is not { } after) return;
            double issued = _clock.Elapsed.TotalSeconds;
            DeviceClock.Synchronize(device);
            double done = _clock.Elapsed.TotalSeconds;
            if (Times.Count > after)
            {
                if (!_phases.ContainsKey(name)) _order.Add(name);
                var (h, d) = _phases.GetValueOrDefault(name);
                _phases[name] = (h + issued - _boundary, d + done - _boundary);
            }
            _boundary = done;
        }

        /// <summary>Per measured step: each phase's seconds until issued and until done, in the loop's order.</summary>
        public IReadOnlyList<TrainingPhase> PhaseMeans()
        {
            int n = Math.Max(Times.Count - 1 - (phasesAfter ?? 0), 1);
            return _order.Select(p => new TrainingPhase(p, _phases[p].Host / n, _phases[p].Done / n)).ToList();
        }

        public void Start(int totalSteps, int startStep) { }
        public void Evaluation(int step, IReadOnlyDictionary<string, double> metrics) { }
        public void Message(string text) => log?.Invoke(text);
        public void Stop() { }
    }

    /// <summary>The objective without writing an artifact at the end.</summary>
    private sealed class NoArtifact(ITrainingObjective inner) : ITrainingObjective
    {
        public IReadOnlyList<TorchSharp.Modules.Parameter> Parameters => inner.Parameters;
        public (Tensor Loss, IReadOnlyDictionary<string, double> Parts) Loss(TrainingBatch batch, bool training, LossCounts? normalizers = null) => inner.Loss(batch, training, normalizers);
        public (Tensor Loss, IReadOnlyList<(string Name, Tensor Value)> Parts)? LossOnDevice(TrainingBatch batch) => inner.LossOnDevice(batch);
        public bool HasLossOnDevice => inner.HasLossOnDevice;
        public (long Parameters, int Projections) GraphSizes => inner.GraphSizes;
        public IEnumerable<KeyValuePair<string, Tensor>> TrainableState() => inner.TrainableState();
        public void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state) => inner.LoadTrainableState(state);
        public void AfterBackward() => inner.AfterBackward();
        public void AfterOptimizerStep() => inner.AfterOptimizerStep();
        public string Description => inner.Description;
        public void SaveArtifact(string folder) { }
    }
}
