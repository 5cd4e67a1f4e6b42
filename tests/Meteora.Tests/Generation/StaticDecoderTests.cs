using Meteora.Generation;
using Meteora.Llama;
using Meteora.Moe;
using static TorchSharp.torch;

namespace Meteora.Tests.Generation;

/// <summary>
/// The static-shape decode step (device-held slot and positions, whole-cache masked attention) against the
/// eager cached forward that generation has always used, on the fixture base and the fixture MeteoRA model.
/// </summary>
public class StaticDecoderTests
{
    /// <summary>
    /// Prefills a left-padded batch of the three reference prompts, then decodes <paramref name="steps"/> greedy
    /// steps twice — eager forward and <see cref="StaticDecoder"/> — feeding both the eager path's tokens.
    /// Returns the largest logit difference and whether every step's argmax agreed.
    /// </summary>
    private static (double MaxDiff, bool SameTokens) Compare(LlamaForCausalLM lm, Device device, bool graph, int steps = 6)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var prompts = Enumerable.Range(0, 3).Select(Fixture.PromptIds).ToArray();
        int B = prompts.Length, T = prompts.Max(p => p.Length);
        var (ids, mask) = TextGenerator.LeftPad(prompts, T, 0);
        var idsT = tensor(ids, [B, T], device: device);
        var maskT = tensor(mask, [B, T], device: device);
        var positions = (maskT.cumsum(1) - 1).clamp_min(0);                       // (B, T)

        using var eagerCache = new KvCache(lm.Config, B, T + steps, lm.DType, device);
        using var staticCache = new KvCache(lm.Config, B, T + steps, lm.DType, device);
        eagerCache.SetPadding(maskT);
        staticCache.SetPadding(maskT);
        var first = lm.forward(idsT, positions, eagerCache, lastOnly: true).argmax(-1).view(B, 1);   // (B, 1)
        lm.forward(idsT, positions, staticCache, lastOnly: true);

        using var decoder = new StaticDecoder(lm, staticCache, useGraph: graph);
        var pos = positions.narrow(1, T - 1, 1) + 1;                              // (B, 1) positions of the first new tokens
        decoder.Start(first, pos);
        var next = first;
        double maxDiff = 0;
        bool same = true;
        for (int s = 0; s < steps; s++)
        {
            var eager = lm.forward(next, pos, eagerCache, lastOnly: true);        // (B, V)
            var stat = decoder.Step().clone();                                    // copied: the decoder reuses its tensor
            maxDiff = Math.Max(maxDiff, (eager.to(ScalarType.Float32) - stat.to(ScalarType.Float32)).abs().max().cpu().item<float>());
            same &= eager.argmax(-1).eq(stat.argmax(-1)).all().cpu().item<bool>();
            next = eager.argmax(-1).view(B, 1);
            pos = pos + 1;
            decoder.Feed(next);
        }
        Assert.Equal(eagerCache.Length, staticCache.Length);
        return (maxDiff, same);
    }

    [Fact]
    public void EagerStaticStepsMatchTheCachedForwardOnThePaddedBase()
    {
        using var lm = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.Float32);
        var (diff, same) = Compare(lm, CPU, graph: false);
        Assert.True(diff < 1e-4, $"max |static − eager| = {diff}");
        Assert.True(same, "argmax differs");
    }

    [Fact]
    public void EagerStaticStepsMatchTheCachedForwardWithMeteoraRouting()
    {
        using var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        m.Configure(topK: 2, strategy: MixingStrategy.Dense);
        var (diff, same) = Compare(m.Model, CPU, graph: false);
        Assert.True(diff < 1e-4, $"max |static − eager| = {diff}");
        Assert.True(same, "argmax differs");
    }

    [Fact]
    public void AStepBeyondTheCacheIsAnError()
    {
        using var _ = no_grad();
        using var lm = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.Float32);
        using var cache = new KvCache(lm.Config, 1, 2, ScalarType.Float32, CPU);
        using var decoder = new StaticDecoder(lm, cache, useGraph: false);
        decoder.Start(tensor(new long[] { 5 }), tensor(new long[] { 0 }).view(1, 1));
        decoder.Step();
        decoder.Step();
        var e = Assert.Throws<MeteoraException>(() => decoder.Step());
        Assert.Contains("exceeds the KV cache of 2", e.Message);
    }

    [Fact]
    public void CudaGraphsAreRefusedForACpuModel()
    {
        using var lm = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.Float32);
        using var cache = new KvCache(lm.Config, 1, 4, ScalarType.Float32, CPU);
        var e = Assert.Throws<MeteoraException>(() => new StaticDecoder(lm, cache, useGraph: true));
        Assert.Contains("needs a CUDA model", e.Message);
    }

    [CudaFact]
    public void GraphReplayMatchesTheCachedForwardOnCuda()
    {
        var cuda = new Device(TorchSharp.DeviceType.CUDA, 0);
        using var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, cuda, ScalarType.Float32);
        m.Configure(topK: 2, strategy: MixingStrategy.Auto);
        var (diff, same) = Compare(m.Model, cuda, graph: true);
        Assert.True(diff < 1e-3, $"max |graph − eager| = {diff}");
        Assert.True(same, "argmax differs");
    }
}

/// <summary>
/// Decoding with a mixing strategy that syncs with the host (loop, segment) cannot be captured in a CUDA graph
/// (issue #18 item 5): generation detects it per decode size and decodes eagerly instead.
/// </summary>
public class UncapturableStrategyTests
{
    [Theory]
    [InlineData(MixingStrategy.Loop, true)]
    [InlineData(MixingStrategy.Segment, true)]
    [InlineData(MixingStrategy.Dense, false)]
    [InlineData(MixingStrategy.Gather, false)]
    public void LoopAndSegmentAreDetected(MixingStrategy strategy, bool uncapturable)
    {
        using var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        m.Configure(topK: 2, strategy: strategy);
        Assert.Equal(uncapturable ? strategy : null, TextGenerator.UncapturableStrategy(m.Model.Projections(), tokens: 4));
    }

    [Fact]
    public void APlainModelHasNone()
    {
        using var lm = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.Float32);
        Assert.Null(TextGenerator.UncapturableStrategy(lm.Projections(), tokens: 1));
    }
}
