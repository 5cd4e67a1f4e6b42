namespace Meteora.Training;

/// <summary>Receives training progress: one call per optimiser step and one per evaluation.</summary>
public interface ITrainingProgress
{
    void Start(int totalSteps, int startStep);
    /// <summary>After an optimiser step: losses, learning rate and throughput so far.</summary>
    void Step(int step, int totalSteps, IReadOnlyDictionary<string, double> metrics, double tokensPerSecond, TimeSpan eta);
    void Evaluation(int step, IReadOnlyDictionary<string, double> metrics);
    void Message(string text);
    void Stop();
    /// <summary>
    /// A phase of the current step has been issued to the device: "forward" (the loss, per micro-batch), "backward"
    /// (per micro-batch), "gradients" (all-reduce and clipping) and "optimizer" (the update and what follows it); a step
    /// replayed from a CUDA graph is one phase, "CUDA graph".
    /// The benchmark's clock times them; progress displays ignore them.
    /// </summary>
    void Phase(string name) { }
}

/// <summary>Progress that goes nowhere (library use, tests).</summary>
public sealed class SilentProgress : ITrainingProgress
{
    /// <summary>
    /// <paramref name="progress"/> (or silence when null) on rank 0 of a data-parallel job or a single process; silence
    /// on the other ranks, so a job reports once.
    /// </summary>
    internal static ITrainingProgress OnRankZero(ITrainingProgress? progress, int rank) =>
        rank == 0 ? progress ?? new SilentProgress() : new SilentProgress();

    public void Start(int totalSteps, int startStep) { }
    public void Step(int step, int totalSteps, IReadOnlyDictionary<string, double> metrics, double tokensPerSecond, TimeSpan eta) { }
    public void Evaluation(int step, IReadOnlyDictionary<string, double> metrics) { }
    public void Message(string text) { }
    public void Stop() { }
}
