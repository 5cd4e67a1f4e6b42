using Meteora.Llama;
using Meteora.Lora;
using Meteora.Runtime;
using static TorchSharp.torch;

namespace Meteora.Tests.Llama;

/// <summary>
/// A base model's q, k and v weights are row blocks of one buffer (so CUDA inference multiplies them in one GEMM), keep
/// their checkpoint names and load in place; adapted projections keep their own weights.
/// </summary>
public class LlamaAttentionTests
{
    [Fact]
    public void PlainQkvWeightsAreConsecutiveRowBlocksFilledFromTheCheckpoint()
    {
        using var lm = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.Float32);
        var weights = ModelFolder.ReadWeights(Fixture.Base).ToDictionary(w => w.Key, w => w.Value);
        foreach (var (layer, i) in lm.model.layers.Select((l, i) => (l, i)))
        {
            var a = layer.self_attn;
            Assert.True(a.SharesQkvBuffer);
            Assert.Equal(DeviceMemory.Address(a.q_proj.weight) + (nint)(a.q_proj.weight.numel() * 4), DeviceMemory.Address(a.k_proj.weight));
            Assert.Equal(DeviceMemory.Address(a.k_proj.weight) + (nint)(a.k_proj.weight.numel() * 4), DeviceMemory.Address(a.v_proj.weight));
            foreach (var (name, w) in new[] { ("q_proj", a.q_proj.weight), ("k_proj", a.k_proj.weight), ("v_proj", a.v_proj.weight) })
                Assert.True(w.equal(weights[$"model.layers.{i}.self_attn.{name}.weight"].to(w.dtype)).all().item<bool>(), $"layer {i} {name} differs from the checkpoint");
        }
    }

    [Fact]
    public void AdaptedProjectionsKeepTheirOwnWeights()
    {
        using var lm = LoraModel.Load(Fixture.Base, Fixture.Adapter("add"), CPU, ScalarType.Float32);   // adapts q_proj
        var a = lm.model.layers[0].self_attn;
        Assert.IsType<LoraLinear>(a.q_proj);
        Assert.False(a.SharesQkvBuffer);
    }
}
