using Meteora.Llama;
using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Meteora.Lora;

/// <summary>
/// A projection with one LoRA adapter applied without merging: <c>y = x Wᵀ + scale · dropout(x) Aᵀ Bᵀ</c>,
/// A (r, in) and B (out, r) under PEFT's names <c>lora_A</c> / <c>lora_B</c>. The adapter may be kept in a wider
/// dtype than the base (float32 adapters on a bfloat16 base for training); its output is cast back.
/// </summary>
public sealed class LoraLinear : Linear
{
    public readonly Parameter lora_A, lora_B;
    public double Scale { get; }
    private readonly Scalar _scale;           // Scale as a Scalar held for the module's lifetime (see RmsNorm)
    public double Dropout { get; }

    public LoraLinear(ProjectionSite site, int r, double scale, double dropout, ScalarType dtype, ScalarType adapterDtype, Device device)
        : base(site, dtype, device)
    {
        Scale = scale;
        _scale = scale.ToScalar();
        Dropout = dropout;
        lora_A = ModelParameter.Create(zeros(r, site.InFeatures, adapterDtype, device));
        lora_B = ModelParameter.Create(zeros(site.OutFeatures, r, adapterDtype, device));
        RegisterComponents();
    }

    /// <summary>(…, in) → (…, out).</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = nn.functional.linear(x, weight);
        var h = x.to(lora_A.dtype);
        if (training && Dropout > 0) h = nn.functional.dropout(h, Dropout, training: true);
        var delta = nn.functional.linear(nn.functional.linear(h, lora_A), lora_B).mul(_scale);   // (…, r) → (…, out)
        return (y + delta.to(y.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>scale · B A, (out, in) in float32.</summary>
    public Tensor Delta()
    {
        using var scope = NewDisposeScope();
        return (lora_B.to(ScalarType.Float32).matmul(lora_A.to(ScalarType.Float32)).mul(_scale)).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _scale.Dispose();
        base.Dispose(disposing);
    }
}
