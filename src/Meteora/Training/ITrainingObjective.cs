using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>
/// What a trainer optimises: which parameters, the loss of a batch (with named parts for logging), how to save
/// the trained parameters as a checkpoint and as the final artifact, and how to restore them on resume.
/// </summary>
public interface ITrainingObjective
{
    /// <summary>Trainable parameters, in a fixed order.</summary>
    IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>
    /// Loss of one micro-batch (scalar, differentiable) and named float parts for logging. Without
    /// <paramref name="normalizers"/> the loss and its parts are the batch's means; with a training step's counts
    /// (<see cref="LossCounts"/>) they are the batch's sums over those counts — its additive share of the step's
    /// mean, so that the step's gradient and parts are sums over its micro-batches and ranks.
    /// </summary>
    (Tensor Loss, IReadOnlyDictionary<string, double> Parts) Loss(TrainingBatch batch, bool training, LossCounts? normalizers = null);

    /// <summary>
    /// The training loss of one batch as its own mean, and its named parts as scalar device tensors, computed without
    /// reading anything back to the host and with the same device work whatever the batch holds: a step that can be
    /// captured in a CUDA graph (<see cref="GraphedTrainingStep"/>). The loss must draw no random numbers (dropout): a
    /// replayed step is not reseeded, so resuming would no longer be exact. Null: this objective cannot (the loop then
    /// never captures its steps).
    /// </summary>
    (Tensor Loss, IReadOnlyList<(string Name, Tensor Value)> Parts)? LossOnDevice(TrainingBatch batch) => null;

    /// <summary>Whether <see cref="LossOnDevice"/> is implemented (so the loop may capture this objective's steps).</summary>
    bool HasLossOnDevice => false;

    /// <summary>
    /// The model's parameter count and how many routed projections a step runs (each ≈ 1.5 ms of host time step by
    /// step): what <c>--cuda-graph auto</c> weighs padding against. (0, 0): unknown.
    /// </summary>
    (long Parameters, int Projections) GraphSizes => (0, 0);

    /// <summary>Named trainable tensors, written to a checkpoint's safetensors.</summary>
    IEnumerable<KeyValuePair<string, Tensor>> TrainableState();

    /// <summary>Restores the tensors written by <see cref="TrainableState"/>.</summary>
    void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state);

    /// <summary>Writes the final artifact (a PEFT adapter, a MeteoRA checkpoint, …) into <paramref name="folder"/>.</summary>
    void SaveArtifact(string folder);

    /// <summary>
    /// After each micro-batch's backward pass: a mixed-precision objective adds the low-precision model's gradients
    /// into its float32 master weights' gradients here (so accumulation over micro-batches happens in float32).
    /// </summary>
    void AfterBackward() { }

    /// <summary>
    /// What the objective trains and how (its kind, precision, settings that change the result): part of the
    /// checkpoint fingerprint, so resuming under another description is refused.
    /// </summary>
    string Description => GetType().Name;

    /// <summary>
    /// After the optimiser step: a mixed-precision objective copies its master weights back into the model (its
    /// <see cref="LoadTrainableState"/> does the same after a resume).
    /// </summary>
    void AfterOptimizerStep() { }
}
