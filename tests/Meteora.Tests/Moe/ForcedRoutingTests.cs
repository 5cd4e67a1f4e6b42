using Meteora.Lora;
using Meteora.Moe;
using static TorchSharp.torch;

namespace Meteora.Tests.Moe;

public class ForcedRoutingTests
{
    private static Tensor Ids(int p) => tensor(Fixture.PromptIds(p).Select(i => (long)i).ToArray(), [1, Fixture.PromptIds(p).Length]);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void EveryTokenForcedToOneAdapterEqualsThatAdapterAlone(int topK)
    {
        using var _ = no_grad();
        using var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        m.Configure(topK: topK);
        for (int a = 0; a < m.AdapterNames.Count; a++)
        {
            using var single = LoraModel.Load(Fixture.Base, Fixture.Adapter(m.AdapterNames[a]), CPU, ScalarType.Float32);
            m.Routing.Forced = new ForcedRouting(a, ForcedRoutingScope.All);
            foreach (var strategy in Enum.GetValues<MixingStrategy>())
            {
                m.Configure(strategy: strategy);
                TensorAssert.Close(single.forward(Ids(0)), m.Forward(Ids(0)), 1e-4, $"{strategy}, k {topK}, adapter {m.AdapterNames[a]}");
            }
        }
        // The trained gates do not route every token of prompt 0 to one adapter, so the forcing changed something.
        m.Routing.Forced = null;
        m.Configure(strategy: MixingStrategy.Dense);
        var gated = m.Forward(Ids(0));
        m.Routing.Forced = new ForcedRouting(0, ForcedRoutingScope.All);
        Assert.True((gated - m.Forward(Ids(0))).abs().max().item<float>() > 1e-3);
    }

    [Fact]
    public void PositionsRouteEachTokenOfAOneRowCallByItsOwnEntry()
    {
        using var _ = no_grad();
        using var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        m.Configure(topK: 2, strategy: MixingStrategy.Dense);
        var ids = Ids(0);
        int t = (int)ids.shape[1];
        var gated = m.Forward(ids);
        m.Routing.Forced = new ForcedRouting(1, ForcedRoutingScope.All);
        var forced = m.Forward(ids);
        // Every position −1: the gates'; every position one adapter: forcing that adapter.
        m.Routing.Forced = new ForcedRouting(1, ForcedRoutingScope.All, Enumerable.Repeat(-1, t).ToArray());
        TensorAssert.Close(gated, m.Forward(ids), 1e-6, "all −1");
        m.Routing.Forced = new ForcedRouting(0, ForcedRoutingScope.All, Enumerable.Repeat(1, t).ToArray());
        TensorAssert.Close(forced, m.Forward(ids), 1e-6, "all adapter 1");
        // The gates for the first half, adapter 1 after: causal, so the first half's logits are the gates' and the last
        // position's are not (the fixture's gates do not send every later token to adapter 1 alone).
        int half = t / 2;
        m.Routing.Forced = new ForcedRouting(0, ForcedRoutingScope.All, Enumerable.Range(0, t).Select(j => j < half ? -1 : 1).ToArray());
        var mixed = m.Forward(ids);
        TensorAssert.Close(gated.narrow(1, 0, half), mixed.narrow(1, 0, half), 1e-6, "positions before the switch");
        Assert.True((mixed.narrow(1, t - 1, 1) - gated.narrow(1, t - 1, 1)).abs().max().item<float>() > 1e-4, "the last position follows its forced adapter");
        // A call of another length (a decode step) goes to Adapter.
        var step = tensor(new long[] { Fixture.PromptIds(0)[1] }, [1, 1]);
        m.Routing.Forced = new ForcedRouting(1, ForcedRoutingScope.All);
        var stepForced = m.Forward(step);
        m.Routing.Forced = new ForcedRouting(1, ForcedRoutingScope.All, Enumerable.Repeat(-1, t).ToArray());
        TensorAssert.Close(stepForced, m.Forward(step), 1e-6, "a one-token call routes to Adapter");
    }

    [Fact]
    public void ScopesSplitPromptCallsFromDecodeSteps()
    {
        long[] prefill = [2, 7, 64], step = [2, 1, 64], flat = [5, 64];
        Assert.True(new ForcedRouting(0, ForcedRoutingScope.All).AppliesTo(prefill));
        Assert.True(new ForcedRouting(0, ForcedRoutingScope.All).AppliesTo(step));
        Assert.True(new ForcedRouting(0, ForcedRoutingScope.Prompt).AppliesTo(prefill));
        Assert.False(new ForcedRouting(0, ForcedRoutingScope.Prompt).AppliesTo(step));
        Assert.False(new ForcedRouting(0, ForcedRoutingScope.Answer).AppliesTo(prefill));
        Assert.True(new ForcedRouting(0, ForcedRoutingScope.Answer).AppliesTo(step));
        Assert.True(new ForcedRouting(0, ForcedRoutingScope.Answer).AppliesTo(flat));
        Assert.Equal(ForcedRoutingScope.Answer, ForcedRouting.ParseScope("answer"));
        var e = Assert.Throws<MeteoraException>(() => ForcedRouting.ParseScope("words"));
        Assert.Contains("--route-by-task", e.Message);
    }

    [Fact]
    public void PromptScopeLeavesADecodeStepToTheGatesAndAnswerScopeForcesIt()
    {
        using var _ = no_grad();
        using var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        m.Configure(topK: 1, strategy: MixingStrategy.Dense);
        var oneToken = tensor(new long[] { Fixture.PromptIds(0)[1] }, [1, 1]);
        var gated = m.Forward(oneToken);
        // An adapter the gates do not give this token everywhere: forcing it changes the logits.
        int a = Enumerable.Range(0, m.AdapterNames.Count).First(i =>
        {
            m.Routing.Forced = new ForcedRouting(i, ForcedRoutingScope.All);
            return (m.Forward(oneToken) - gated).abs().max().item<float>() > 1e-3;
        });
        m.Routing.Forced = new ForcedRouting(a, ForcedRoutingScope.Prompt);
        TensorAssert.Close(gated, m.Forward(oneToken), 0, "prompt scope, one-position call");
        m.Routing.Forced = new ForcedRouting(a, ForcedRoutingScope.Answer);
        using var single = LoraModel.Load(Fixture.Base, Fixture.Adapter(m.AdapterNames[a]), CPU, ScalarType.Float32);
        TensorAssert.Close(single.forward(oneToken), m.Forward(oneToken), 1e-4, "answer scope, one-position call");
    }
}
