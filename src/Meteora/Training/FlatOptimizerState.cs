using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>
/// Every trainable parameter's gradient and AdamW moments as views of three flat float32 buffers, so that zeroing,
/// clipping and the AdamW update are a dozen kernels over all parameters instead of a dozen per parameter (224 gates:
/// ≈ 3 400 tiny kernels in a graphed step). The parameters themselves stay separate tensors (modules own them): the
/// update runs on a flat copy gathered with one <c>cat</c> and is written back with one copy per parameter.
/// <para>
/// Autograd accumulates into an existing gradient in place, so the views stay the gradients; TorchSharp's AdamW keeps
/// working on its <see cref="AdamW.State"/> tensors, now views (step-by-step steps, checkpoints, <c>--resume</c> see the
/// same values).
/// </para>
/// </summary>
internal sealed class FlatOptimizerState : IDisposable
{
    private readonly IReadOnlyList<Parameter> _parameters;
    private readonly long[] _offsets;
    private readonly Tensor _grad, _m, _v;     // (Σ numel,) float32 each

    private FlatOptimizerState(IReadOnlyList<Parameter> parameters, long[] offsets, Tensor grad, Tensor m, Tensor v)
    {
        _parameters = parameters; _offsets = offsets; _grad = grad; _m = m; _v = v;
    }

    /// <summary>
    /// Moves the parameters' gradients and <paramref name="states"/>' moments into flat buffers (values kept), or returns
    /// null when that does not apply: a parameter that is not float32 on one device, or has no gradient yet.
    /// </summary>
    public static FlatOptimizerState? Adopt(IReadOnlyList<Parameter> parameters, IReadOnlyList<AdamW.State> states)
    {
        if (parameters.Count == 0 || states.Count != parameters.Count) return null;
        var device = parameters[0].device;
        var offsets = new long[parameters.Count + 1];
        for (int i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i];
            using var g = p.grad;
            if (g is null || p.dtype != ScalarType.Float32 || g.dtype != ScalarType.Float32 || p.device_type != device.type || p.device_index != device.index) return null;
            offsets[i + 1] = offsets[i] + p.numel();
        }
        using var noGrad = no_grad();
        var grad = empty(offsets[^1], ScalarType.Float32, device).DetachFromDisposeScope();
        var m = empty(offsets[^1], ScalarType.Float32, device).DetachFromDisposeScope();
        var v = empty(offsets[^1], ScalarType.Float32, device).DetachFromDisposeScope();
        for (int i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i];
            var s = states[i];
            var gv = grad.narrow(0, offsets[i], p.numel()).view(p.shape);
            using (var old = p.grad!) gv.copy_(old);
            p.grad = gv;
            var mv = m.narrow(0, offsets[i], p.numel()).view(p.shape).copy_(s.exp_avg);
            var vv = v.narrow(0, offsets[i], p.numel()).view(p.shape).copy_(s.exp_avg_sq);
            s.exp_avg.Dispose();
            s.exp_avg_sq.Dispose();
            s.exp_avg = mv.DetachFromDisposeScope();
            s.exp_avg_sq = vv.DetachFromDisposeScope();
        }
        return new FlatOptimizerState(parameters, offsets, grad, m, v);
    }

    /// <summary>All gradients zeroed: one kernel.</summary>
    public void ZeroGrad()
    {
        using var noGrad = no_grad();
        _grad.zero_();
    }

    /// <summary>
    /// <c>clip_grad_norm_</c> (2-norm) over all gradients with the norm left on the device: every gradient scaled by
    /// min(1, max / (‖g‖ + 1e-6)). Returns the norm before clipping (scalar). The norm is summed over the flat buffer,
    /// not as the norm of per-parameter norms: the same value up to float32 summation order.
    /// </summary>
    public Tensor ClipGradNorm(double maxNorm)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var total = _grad.norm();
        using Scalar max = maxNorm, tiny = 1e-6, one = 1.0;                                // held for the ops (see RmsNorm)
        _grad.mul_(total.add(tiny).reciprocal().mul(max).clamp_max(one));
        return total.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// TorchSharp's <c>AdamW.step</c> (decoupled weight decay, no amsgrad) over all parameters at once, its ops in its
    /// order, with the step-dependent factors read from <paramref name="hyper"/> (1 − lr·wd, −lr / (1 − β1ᵗ),
    /// 1 / √(1 − β2ᵗ): <see cref="GraphedTrainingStep.Hyper"/>) instead of host scalars: the same moments, parameters up to
    /// the rounding of its last multiply-add. The state's step counters are left to the caller.
    /// </summary>
    public void AdamWUpdate(Tensor hyper, TrainingOptions o)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using Scalar beta1 = o.Beta1, beta2 = o.Beta2, keep1 = 1 - o.Beta1, keep2 = 1 - o.Beta2, eps = o.AdamEps;   // held (see RmsNorm)
        var p = cat(_parameters.Select(x => x.reshape(-1)).ToList());                      // (Σ numel,) the parameters' values
        p.mul_(hyper[0]);
        _m.mul_(beta1).add_(_grad, keep1);
        _v.mul_(beta2).addcmul_(_grad, _grad, keep2);
        var denominator = _v.sqrt().mul_(hyper[2]).add_(eps);
        p.add_(_m.div(denominator).mul_(hyper[1]));
        for (int i = 0; i < _parameters.Count; i++)
            _parameters[i].copy_(p.narrow(0, _offsets[i], _offsets[i + 1] - _offsets[i]).view(_parameters[i].shape));
    }

    public void Dispose()
    {
        // The views handed to the parameters and the optimiser keep the storage alive; only these handles go.
        _grad.Dispose(); _m.Dispose(); _v.Dispose();
    }
}
