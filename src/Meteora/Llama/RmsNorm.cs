using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Meteora.Llama;

/// <summary>
/// Root-mean-square norm computed in float32 and scaled in the input dtype, as transformers does. The epsilon is
/// held as a TorchSharp <see cref="Scalar"/> for the module's lifetime: TorchSharp 0.107 leaves a Scalar made
/// implicitly from a number at a call to its finalizer (dotnet/TorchSharp#1434), and a collection while the native
/// op runs can free it mid-call — with a thread collecting continuously, plain <c>pow(2)</c> / <c>+ 1e-5</c> calls
/// failed within seconds with "Unknown scalar type". Hot paths therefore hold their Scalars, the add's alpha included (<see cref="HeldScalars"/>).
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;
    private readonly Scalar _eps;
    private readonly float _epsValue;

    public RmsNorm(string name, int size, double eps, ScalarType dtype, Device device) : base(name)
    {
        weight = ModelParameter.Create(empty(size, dtype, device));
        _eps = eps.ToScalar();
        _epsValue = (float)eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        if (FusedKernels.RmsNorm(x, null, weight, _epsValue) is { } fused) return fused.Normalized;   // bfloat16 inference on CUDA
        using var scope = NewDisposeScope();
        var h = x.to(ScalarType.Float32);
        var variance = h.square().mean([-1], keepdim: true);  // (…, 1)
        h = h * rsqrt(variance.add(_eps, HeldScalars.One));
        return (weight * h.to(x.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The residual add before a norm: returns (x + residual, RMSNorm of it), in one kernel where
    /// <see cref="FusedKernels"/> applies.
    /// </summary>
    internal (Tensor Sum, Tensor Normalized) AddAndNormalize(Tensor x, Tensor residual)
    {
        if (FusedKernels.RmsNorm(x, residual, weight, _epsValue) is { } fused) return fused;
        var sum = x + residual;
        return (sum, forward(sum));
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _eps.Dispose();
        base.Dispose(disposing);
    }
}
