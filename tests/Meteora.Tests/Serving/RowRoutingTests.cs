using Meteora.Moe;
using static TorchSharp.torch;

namespace Meteora.Tests.Serving;

public class RowRoutingTests
{
    [Fact]
    public void EachRowOfOneBatchedForwardMatchesTheReferenceForItsOwnRouting()
    {
        using var _ = no_grad();
        using var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        var prompt = Fixture.PromptIds(0);
        int T = prompt.Length;
        var ids = tensor(Enumerable.Repeat(prompt, 4).SelectMany(p => p).Select(i => (long)i).ToArray(), [4, T]);
        using var rows = new RowRouting(4, 3, m.Model.Config.NumHiddenLayers, 2, CPU);
        rows.SetGates(0, 1, 1.0);
        rows.SetGates(1, 2, 15.0);
        rows.SetAdapter(2, 1);   // add
        rows.SetBase(3);
        rows.Upload();
        m.Routing.Rows = rows;
        foreach (var strategy in Enum.GetValues<MixingStrategy>())
        {
            m.Configure(strategy: strategy);
            var logits = m.Forward(ids);                                               // (4, T, V)
            TensorAssert.Close(Fixture.Tensor("meteora.k1.T1.logits.0"), logits[0], 1e-3, $"{strategy}: gates k1");
            TensorAssert.Close(Fixture.Tensor("meteora.k2.T15.logits.0"), logits[1], 1e-3, $"{strategy}: gates k2 T15");
            TensorAssert.Close(Fixture.Tensor("single.add.logits.0"), logits[2], 1e-3, $"{strategy}: forced add");
            TensorAssert.Close(Fixture.Tensor("base.logits.0"), logits[3], 1e-3, $"{strategy}: base");
        }
    }

    [Fact]
    public void UsageSumsEachRowsLastTokenWeightsByLayerGroup()
    {
        using var _ = no_grad();
        using var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        var prompt = Fixture.PromptIds(0);
        var ids = tensor(prompt.Concat(prompt).Select(i => (long)i).ToArray(), [2, prompt.Length]);
        using var rows = new RowRouting(2, 3, 2, 2, CPU);
        rows.SetGates(0, 2, 1.0);
        rows.SetAdapter(1, 2);
        rows.Upload();
        rows.ClearUsage();
        m.Routing.Rows = rows;
        m.Forward(ids);
        var usage = rows.Usage!;                                                       // (2, 2, 3)
        // Seven projections per layer, one layer per group; each token's weights sum to 1.
        TensorAssert.Close(full(2, 2, 7f), usage.sum(-1), 1e-5, "weights per group");
        TensorAssert.Close(tensor(new[] { 0f, 0f, 7f }), usage[1, 0], 1e-6, "forced row: all on adapter 2");
        Assert.True(usage[0].gt(0).sum().item<long>() > 2, "gate-routed row spreads over adapters");
        Assert.Equal(1, rows.GroupOf(1));
        var e = Assert.Throws<MeteoraException>(() => rows.SetGates(0, 4, 1.0));
        Assert.Contains("top_k", e.Message);
    }
}
