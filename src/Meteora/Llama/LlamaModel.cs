using Meteora.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Meteora.Llama;

/// <summary>The decoder stack under the Hugging Face prefix <c>model.</c>: embeddings, layers, final norm.</summary>
public sealed class LlamaModel : nn.Module
{
    public readonly Embedding embed_tokens;
    public readonly ModuleList<LlamaDecoderLayer> layers;
    public readonly RmsNorm norm;

    public LlamaModel(LlamaConfig c, ScalarType dtype, Device device, Func<ProjectionSite, Linear> makeProjection)
        : base("model")
    {
        embed_tokens = new Embedding(c.VocabSize, c.HiddenSize, dtype, device);
        layers = new ModuleList<LlamaDecoderLayer>();
        for (int i = 0; i < c.NumHiddenLayers; i++) layers.Add(new LlamaDecoderLayer(c, i, dtype, device, makeProjection));
        norm = new RmsNorm("norm", c.HiddenSize, c.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    /// <summary>ids (B, T) → normed hidden states (B, T, hidden).</summary>
    internal Tensor forward(Tensor ids, AttentionContext ctx)
    {
        using var scope = NewDisposeScope();
        var h = embed_tokens.forward(ids);
        PhaseMarks.Mark("embedding");
        foreach (var layer in layers) h = layer.forward(h, ctx);
        h = norm.forward(h);
        PhaseMarks.Mark("norm");
        return h.MoveToOuterDisposeScope();
    }
}
