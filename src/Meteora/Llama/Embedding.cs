using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Meteora.Llama;

/// <summary>Token embedding table, (vocab, hidden), under the Hugging Face name <c>weight</c>.</summary>
public sealed class Embedding : nn.Module<Tensor, Tensor>
{
    public readonly Parameter weight;

    public Embedding(int vocab, int hidden, ScalarType dtype, Device device) : base("embed_tokens")
    {
        weight = ModelParameter.Create(empty(vocab, hidden, dtype, device));
        RegisterComponents();
    }

    /// <summary>(B, T) ids → (B, T, hidden).</summary>
    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var rows = weight.index_select(0, ids.reshape(-1));     // (B·T, hidden)
        return rows.view(ids.shape[0], ids.shape[1], -1).MoveToOuterDisposeScope();
    }
}
