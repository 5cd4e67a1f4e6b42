using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Llama;

/// <summary>Pre-norm decoder block: x + attn(norm(x)), then h + mlp(norm(h)).</summary>
public sealed class LlamaDecoderLayer : nn.Module
{
    public readonly LlamaAttention self_attn;
    public readonly LlamaMlp mlp;
    public readonly RmsNorm input_layernorm, post_attention_layernorm;
    private readonly int _index;

    public LlamaDecoderLayer(LlamaConfig c, int index, ScalarType dtype, Device device,
        Func<ProjectionSite, Linear> makeProjection) : base($"{index}")
    {
        _index = index;
        self_attn = new LlamaAttention(c, index, makeProjection);
        mlp = new LlamaMlp(c, index, makeProjection);
        input_layernorm = new RmsNorm("input_layernorm", c.HiddenSize, c.RmsNormEps, dtype, device);
        post_attention_layernorm = new RmsNorm("post_attention_layernorm", c.HiddenSize, c.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    /// <summary>(B, T, hidden) → (B, T, hidden).</summary>
    internal Tensor forward(Tensor x, AttentionContext ctx)
    {
        using var scope = NewDisposeScope();
        var n = input_layernorm.forward(x);
        PhaseMarks.Mark("norm");
        var (h, normed) = post_attention_layernorm.AddAndNormalize(x, self_attn.forward(n, ctx, _index));
        PhaseMarks.Mark("residual + norm");
        var y = h + mlp.forward(normed);
        PhaseMarks.Mark("residual");
        return y.MoveToOuterDisposeScope();
    }
}
