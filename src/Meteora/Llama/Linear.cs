using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Meteora.Llama;

/// <summary>
/// A bias-free projection <c>y = x Wᵀ</c> with W <c>(out, in)</c> under the Hugging Face name <c>weight</c>.
/// LoRA and MeteoRA projections derive from it, so the base weight keeps its checkpoint name everywhere.
/// </summary>
public class Linear : nn.Module<Tensor, Tensor>
{
    /// <summary>The frozen base weight, (out, in).</summary>
    public readonly Parameter weight;

    public ProjectionSite Site { get; }

    /// <summary>Allocates an uninitialised weight on <paramref name="device"/>; the loader fills it.</summary>
    public Linear(ProjectionSite site, ScalarType dtype, Device device) : base(site.Name)
    {
        Site = site;
        weight = ModelParameter.Create(empty(site.OutFeatures, site.InFeatures, dtype, device));
        RegisterComponents();
    }

    /// <summary>
    /// Uses <paramref name="weightView"/> (out, in) as the weight: a row block of a larger buffer that a subclass
    /// multiplies in one GEMM (the view is consumed and becomes the parameter).
    /// </summary>
    protected Linear(ProjectionSite site, Tensor weightView) : base(site.Name)
    {
        Site = site;
        weight = ModelParameter.Create(weightView);
        RegisterComponents();
    }

    /// <summary>A plain projection whose weight is <paramref name="weightView"/> (out, in), a row block of a larger buffer (consumed).</summary>
    internal static Linear OnView(ProjectionSite site, Tensor weightView) => new(site, weightView);

    /// <summary>(…, in) → (…, out); one bfloat16 token on CUDA through the decode GEMV kernel (<see cref="DecodeGemv"/>).</summary>
    public override Tensor forward(Tensor x) => DecodeGemv.Project(x, weight);

    /// <summary>
    /// The outputs of <paramref name="projections"/> (this one first) of one input x (…, in), each (…, out), computed
    /// together in fewer launches (gate and up; q, k and v), or null when they cannot run together here — then the
    /// caller runs each projection's forward. Plain projections: one decode-GEMV launch for one token
    /// (<see cref="DecodeGemv.TryProjectGroup"/>); <c>Moe.MeteoraLinear</c> overrides it with its own one-token path,
    /// so the decoder layers ask any projection without depending on the mixture-of-experts layer above them.
    /// </summary>
    internal virtual Tensor[]? TryForwardGroup(IReadOnlyList<Linear> projections, Tensor x) =>
        x.device_type == DeviceType.CUDA && projections.All(p => p.GetType() == typeof(Linear))
            ? DecodeGemv.TryProjectGroup(x, projections.Select(p => (Tensor)p.weight).ToList()) : null;
}
