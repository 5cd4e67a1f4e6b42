using Meteora.Llama;
using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Meteora.Moe;

/// <summary>
/// A projection with N LoRA adapters embedded as a mixture of experts: <c>y = W x + Σ_j w_j · s_j B_j A_j x</c>
/// over the top-k adapters that the gate <c>moe_gate (N, in)</c> picks for each token. The gate is float32 (it
/// is what gate training updates); base and adapters are in the model dtype.
/// </summary>
public sealed class MeteoraLinear : Linear
{
    public readonly Parameter moe_gate;
    private readonly RoutingOptions _routing;

    public AdapterStack Adapters { get; }
    /// <summary>Where routing decisions go when set (trace, gate loss); null = not recorded.</summary>
    public RoutingRecorder? Recorder { get; set; }

    public MeteoraLinear(ProjectionSite site, AdapterStack adapters, RoutingOptions routing, ScalarType dtype, Device device)
        : base(site, dtype, device)
    {
        Adapters = adapters;
        _routing = routing;
        moe_gate = ModelParameter.Create(zeros(adapters.Count, site.InFeatures, ScalarType.Float32, device));
        RegisterComponents();
    }

    /// <summary>(…, in) → (…, out).</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var shape = x.shape;
        var x2 = x.reshape(-1, shape[^1]);                                               // (N, in)
        var logits = nn.functional.linear(x2.to(ScalarType.Float32), moe_gate);          // (N, L) float32
        int k = Math.Min(_routing.TopK, Adapters.Count);
        var (indices, weights) = Router.Route(logits, k, _routing.Temperature, _routing.TrainingForm);
        Recorder?.Add(Site.Key, logits.view([.. shape[..^1], Adapters.Count]), indices.view([.. shape[..^1], k]));
        var y = nn.functional.linear(x2, weight);                                         // (N, out)
        // Adapters may be kept wider than the model (float32 while training them on a bfloat16 base).
        var xa = x2.dtype == Adapters.A.dtype ? x2 : x2.to(Adapters.A.dtype);
        y = y + Mixers.Mix(_routing.Strategy, Adapters, xa, indices, weights).to(y.dtype);
        return y.view([.. shape[..^1], y.shape[^1]]).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) Adapters.Dispose();
        base.Dispose(disposing);
    }
}
