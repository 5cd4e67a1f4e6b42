using Meteora.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>
/// A whole training step — zeroing the gradients, forward and loss, backward, clipping, AdamW and the objective's
/// after-step work — captured once as a CUDA graph and replayed for every later step: one launch instead of the
/// ≈ 10 000 kernel launches and host-side op dispatches a MeteoRA model's step issues one by one (on the GPU machine a
/// gate-training step of an 8B model was entirely bound by them: 350 ms issued, 352 ms done, batch 1 or 4 alike).
/// <para>
/// A graph replays fixed shapes and addresses, so every batch is padded to one shape (<see cref="TrainingBatch.Collate"/>:
/// padding counts in no loss), copied into the tensors the capture read, and the step's host values — learning rate,
/// AdamW's bias corrections — live in a device tensor written before each replay. The update is TorchSharp's AdamW
/// (decoupled weight decay) on that optimiser's own state tensors — after the first backward pass views of flat buffers
/// (<see cref="FlatOptimizerState"/>) — so checkpoints and resuming are unchanged; its step counters are advanced here.
/// Clipping is <c>clip_grad_norm_</c>'s (total 2-norm, coefficient max / (norm + 1e-6) clamped at 1) with the norm kept
/// on the device. The step's logged parts come back in one read.
/// </para>
/// <para>
/// The first graphed step runs eagerly on the capture's side stream (it loads kernels, creates cuBLAS workspaces and the
/// gradients the graph accumulates into); the capture happens on the next one. A batch that does not fit the captured
/// shape, or a capture that fails (an objective op that reads back from the device, an unsupported op, optimiser state
/// that cannot move into flat buffers), leaves that step — or every step — to the eager loop.
/// </para>
/// </summary>
internal sealed class GraphedTrainingStep : IDisposable
{
    private readonly ITrainingObjective _objective;
    private readonly AdamW _optimizer;
    private readonly TrainingOptions _o;
    private readonly Device _device;
    private readonly int _padId, _rows, _length;
    private readonly bool _weighted;
    private readonly Tensor _hyper;                       // (3,) float32: 1 − lr·wd, −lr / (1 − β1ᵗ), 1 / √(1 − β2ᵗ)
    private readonly CudaStreams.StreamValue _side;       // warm-up, capture
    private TrainingBatch? _batch;                        // the captured step's inputs, refilled before every replay
    private CudaGraph? _graph;
    private Tensor? _parts;                               // (parts + 1,) float32: the objective's parts, then the gradient norm
    private List<string>? _names;
    private FlatOptimizerState? _flat;                    // gradients and moments in flat buffers, from the first backward pass on

    /// <summary>Why the loop stopped using the graph (a failed capture), or null.</summary>
    public string? Failure { get; private set; }

    /// <summary>Steps replayed so far.</summary>
    public int Replays { get; private set; }

    /// <summary>A graphed step for batches of at most <paramref name="rows"/> rows of at most <paramref name="length"/> tokens.</summary>
    public GraphedTrainingStep(ITrainingObjective objective, AdamW optimizer, TrainingOptions o, Device device, int padId, int rows, int length, bool weighted)
    {
        _objective = objective; _optimizer = optimizer; _o = o; _device = device; _padId = padId; _rows = rows; _length = length; _weighted = weighted;
        _hyper = zeros(3, ScalarType.Float32, device).DetachFromDisposeScope();
        _side = CudaStreams.SideStream(DeviceIndex);
    }

    /// <summary>
    /// Why a step of <paramref name="objective"/> cannot be graphed here, or null when it can: a CUDA device with graphs,
    /// one micro-batch per step in one process without rehearsal rows, and an objective with a device-side loss.
    /// </summary>
    public static string? Unsupported(ITrainingObjective objective, TrainingOptions o, Device device, bool distributed, bool replay) =>
        device.type != DeviceType.CUDA ? "not on a CUDA device"
        : !CudaGraph.Available || !CudaStreams.Available ? "this libtorch does not export CUDA graphs"
        : distributed ? "data-parallel steps all-reduce between the backward pass and the update"
        : o.GradAccum != 1 ? "--grad-accum above 1"
        : replay ? "rehearsal rows (--replay)"
        : !objective.HasLossOnDevice ? "this objective reads its loss back to the host"
        : null;

    /// <summary>Whether <paramref name="rows"/> fit the graph's shape and weighting (and no capture has failed).</summary>
    public bool Fits(IReadOnlyList<EncodedExample> rows) => Failure is null && rows.Count <= _rows && rows.All(r => r.Ids.Length <= _length)
        && (_weighted || rows.All(r => r.LossWeights is null));

    /// <summary>
    /// One optimiser step on <paramref name="rows"/> at learning rate <paramref name="lr"/>: run eagerly on a side stream
    /// on the first call (the warm-up a capture needs), captured on the second, replayed after. Returns the step's logged
    /// parts (and grad_norm when clipping), or null when the capture failed (<see cref="Failure"/> says why; nothing was
    /// updated, and the caller runs the step eagerly).
    /// </summary>
    public Dictionary<string, double>? Step(IReadOnlyList<EncodedExample> rows, double lr)
    {
        var states = _optimizer.state_dict().State.Cast<AdamW.State>().ToList();
        long t = states[0].step + 1;
        using (var host = tensor(Hyper(_o, lr, t)))
            _hyper.copy_(host);
        var batch = TrainingBatch.Collate(rows, _padId, _device, _rows, _length, _weighted);
        if (_batch is null)
        {
            // Warm-up: the step itself, eagerly, on the stream the capture will use (cuBLAS workspaces, kernels, gradients).
            _batch = batch;
            cuda.synchronize(_device);
            using (CudaStreams.Use(_side, DeviceIndex)) _parts = Body().DetachFromDisposeScope();
            cuda.synchronize(_device);
        }
        else
        {
            _batch.CopyFrom(batch);
            batch.Dispose();
            if (_graph is null && !TryCapture()) return null;
            _graph!.Replay();
            Replays++;
        }
        if (_flat is not null) foreach (var s in states) s.step = t;   // else TorchSharp's own step advanced them (warm-up only)
        using var read = _parts!.cpu();
        var values = read.data<float>().ToArray();
        var result = new Dictionary<string, double>();
        for (int i = 0; i < _names!.Count; i++) result[_names[i]] = values[i];
        return result;
    }

    /// <summary>
    /// AdamW's step-dependent factors for step <paramref name="t"/> (1-based) at learning rate <paramref name="lr"/>, as
    /// TorchSharp's <c>AdamW.step</c> forms them: 1 − lr·wd and −lr / (1 − β1ᵗ) are doubles the kernels read as float32;
    /// √(1 − β2ᵗ) divides as the float32 reciprocal ATen takes of a host scalar divisor.
    /// </summary>
    internal static float[] Hyper(TrainingOptions o, double lr, long t) =>
        [(float)(1 - lr * o.WeightDecay), (float)-(lr / (1 - Math.Pow(o.Beta1, t))), 1f / (float)Math.Sqrt(1 - Math.Pow(o.Beta2, t))];

    private int DeviceIndex => _device.index < 0 ? 0 : _device.index;

    /// <summary>The step's device work (the graph's content): returns its logged parts (parts + 1,) and sets their names.</summary>
    private Tensor Body()
    {
        var parameters = _objective.Parameters;
        using var scope = NewDisposeScope();
        if (_flat is not null) _flat.ZeroGrad();
        else _optimizer.zero_grad();                                                      // the warm-up: no gradients yet
        var (loss, parts) = _objective.LossOnDevice(_batch!)!.Value;
        loss.backward();
        _objective.AfterBackward();
        // After the first backward pass every gradient exists: from then on they (and the moments) are views of flat buffers.
        _flat ??= FlatOptimizerState.Adopt(parameters, _optimizer.state_dict().State.Cast<AdamW.State>().ToList());
        Tensor logged;
        using (no_grad())
        {
            var values = parts.Select(x => x.Value.detach().reshape(1).to(ScalarType.Float32)).ToList();
            _names = parts.Select(x => x.Name).ToList();
            if (_o.ClipNorm > 0)
            {
                // Without flat buffers (a warm-up the graph will refuse: TryCapture) the step is the eager loop's own.
                values.Add(_flat?.ClipGradNorm(_o.ClipNorm).reshape(1)
                    ?? tensor(new[] { (float)nn.utils.clip_grad_norm_(parameters, _o.ClipNorm) }, device: _device));
                _names.Add("grad_norm");
            }
            if (_flat is not null) _flat.AdamWUpdate(_hyper, _o);
            else _optimizer.step();
            logged = cat(values);
        }
        _objective.AfterOptimizerStep();
        return logged.MoveToOuterDisposeScope();
    }

    private bool TryCapture()
    {
        if (_flat is null)
        {
            // The graph's update reads the flat buffers; TorchSharp's would freeze this step's learning rate into the graph.
            Failure = "the optimiser state could not move into flat buffers (a parameter without a gradient after the first step, or not float32)";
            return false;
        }
        _parts?.Dispose();
        _parts = null;
        try
        {
            _graph = CudaGraph.Capture(_device, _side, () => _parts = Body().DetachFromDisposeScope());
            return true;
        }
        catch (MeteoraException e)
        {
            Failure = e.Message;
            _graph = null;
            return false;
        }
    }

    public void Dispose()
    {
        _graph?.Dispose();
        _flat?.Dispose();
        _batch?.Dispose();
        _parts?.Dispose();
        _hyper.Dispose();
    }
}
