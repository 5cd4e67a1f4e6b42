using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Llama;

/// <summary>SwiGLU feed-forward: down(silu(gate(x)) · up(x)).</summary>
public sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    public readonly Linear gate_proj, up_proj, down_proj;

    public LlamaMlp(LlamaConfig c, int layer, Func<ProjectionSite, Linear> makeProjection) : base("mlp")
    {
        gate_proj = makeProjection(new ProjectionSite(layer, "mlp", "gate_proj", c.HiddenSize, c.IntermediateSize));
        up_proj = makeProjection(new ProjectionSite(layer, "mlp", "up_proj", c.HiddenSize, c.IntermediateSize));
        down_proj = makeProjection(new ProjectionSite(layer, "mlp", "down_proj", c.IntermediateSize, c.HiddenSize));
        RegisterComponents();
    }

    /// <summary>(B, T, hidden) → (B, T, hidden) through (B, T, intermediate).</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        Tensor g, u;                                                        // (B, T, intermediate)
        if (gate_proj.TryForwardGroup([gate_proj, up_proj], x) is [var gg, var uu])
            (g, u) = (gg, uu);                                              // both in one launch (one token at decode)
        else
            (g, u) = (gate_proj.forward(x), up_proj.forward(x));
        PhaseMarks.Mark("gate/up projections");
        var h = FusedKernels.SiluMul(g, u) ?? nn.functional.silu(g) * u;
        PhaseMarks.Mark("SiLU·up");
        var y = down_proj.forward(h);
        PhaseMarks.Mark("down projection");
        return y.MoveToOuterDisposeScope();
    }
}
