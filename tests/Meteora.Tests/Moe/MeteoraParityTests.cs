using Meteora.Generation;
using Meteora.Moe;
using static TorchSharp.torch;

namespace Meteora.Tests.Moe;

/// <summary>The MeteoRA model against transformers' references, for every mixing strategy.</summary>
public class MeteoraParityTests : IClassFixture<MeteoraParityTests.Loaded>
{
    public sealed class Loaded : IDisposable
    {
        public MeteoraModel Model { get; } = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        public void Dispose() => Model.Dispose();
    }

    private readonly MeteoraModel _m;
    public MeteoraParityTests(Loaded l) => _m = l.Model;

    private static Tensor Ids(int p) => tensor(Fixture.PromptIds(p).Select(i => (long)i).ToArray(), [1, Fixture.PromptIds(p).Length]);

    public static TheoryData<int, int, string> Cases()
    {
        var data = new TheoryData<int, int, string>();
        foreach (var (k, t) in new[] { (1, 1), (2, 1), (2, 15), (3, 1) })
            foreach (var s in new[] { "loop", "gather", "dense", "segment", "auto" })
                data.Add(k, t, s);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void LogitsMatchTheReference(int k, int temperature, string strategy)
    {
        using var _ = no_grad();
        _m.Configure(k, temperature, MixingStrategies.Parse(strategy));
        for (int p = 0; p < 2; p++)
            TensorAssert.Close(Fixture.Tensor($"meteora.k{k}.T{temperature}.logits.{p}"), _m.Forward(Ids(p))[0], 1e-3, $"k{k} T{temperature} {strategy} prompt {p}");
    }

    [Theory]
    [InlineData("dense")]
    [InlineData("loop")]
    public void LogitsMatchTheReferenceWithTheBaseAndAdapterGemmsSplit(string strategy)
    {
        // Large token counts run the base GEMM and the [A; G] GEMM separately; force that path on the fixture.
        using var _ = no_grad();
        long was = MeteoraLinear.SplitGemmMinTokens;
        MeteoraLinear.SplitGemmMinTokens = 1;
        try
        {
            _m.Configure(2, 1, MixingStrategies.Parse(strategy));
            for (int p = 0; p < 2; p++)
                TensorAssert.Close(Fixture.Tensor($"meteora.k2.T1.logits.{p}"), _m.Forward(Ids(p))[0], 1e-3, $"split {strategy} prompt {p}");
        }
        finally { MeteoraLinear.SplitGemmMinTokens = was; }
    }

    [Fact]
    public void TraceEqualsTheReferenceTop2Routing()
    {
        using var _ = no_grad();
        _m.Configure(2, 1.0, MixingStrategy.Dense);
        using var recorder = new RoutingRecorder { RecordIndices = true };
        _m.Attach(recorder);
        try { _m.Forward(Ids(0)); }
        finally { _m.Attach(null); }
        var trace = recorder.Trace();
        var expected = Fixture.Reference.GetProperty("routing_trace_prompt0_top2");
        Assert.Equal(expected.EnumerateObject().Count(), trace.Count);
        foreach (var proj in expected.EnumerateObject())
        {
            var want = proj.Value.EnumerateArray().Select(t => t.EnumerateArray().Select(e => e.GetInt64()).ToArray()).ToArray();
            Assert.Equal(want, trace[proj.Name]);
        }
    }

    [Fact]
    public void GreedyTop2ContinuationsAreExact()
    {
        _m.Configure(2, 1.0, MixingStrategy.Dense);
        foreach (var g in Fixture.Reference.GetProperty("meteora_greedy_top2_T1").EnumerateArray())
        {
            var prompt = Fixture.PromptIds(g.GetProperty("prompt").GetInt32());
            var expected = Fixture.Ints(g.GetProperty("new_tokens"));
            Assert.Equal(expected, _m.Generate([prompt], new GenerationOptions { MaxNewTokens = expected.Length })[0]);
        }
    }

    [Fact]
    public void CheckpointDefaultsComeFromItsConfig()
    {
        using var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        Assert.Equal((2, 1.0), (m.Routing.TopK, m.Routing.Temperature));
        Assert.Equal(["reverse", "add", "upper"], m.AdapterNames);
        Assert.Equal(14, m.Projections.Count);
    }
}
