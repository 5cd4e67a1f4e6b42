using Meteora.Llama;
using Meteora.Lora;
using Meteora.Moe;
using static TorchSharp.torch;

namespace Meteora.Tests.Moe;

public class MeteoraPropertyTests
{
    private static readonly string[] Names = ["reverse", "add", "upper"];
    private static Tensor Ids(int p) => tensor(Fixture.PromptIds(p).Select(i => (long)i).ToArray(), [1, Fixture.PromptIds(p).Length]);

    private static List<LoraAdapter> Adapters(IEnumerable<string> names) =>
        names.Select(n => LoraAdapter.Load(Fixture.Adapter(n), LlamaConfig.Load(Fixture.Base))).ToList();

    [Fact]
    public void AllAdaptersWithHugeTemperatureEqualUniformMixing()
    {
        using var _ = no_grad();
        using var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        m.Configure(topK: 3, temperature: 1e9);
        // Expected, computed without the MeteoRA code: fold (1/N) Σ s_i B_i A_i into the base weights.
        using var merged = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.Float32);
        var adapters = Adapters(Names);
        foreach (var p in merged.Projections())
        {
            var delta = adapters.Select(a => a.Weights[p.Site.Key]).Aggregate(zeros_like(p.weight), (acc, w) => acc + w.B.matmul(w.A) * 2.0);
            p.weight.add_(delta / 3.0);
        }
        foreach (var strategy in Enum.GetValues<MixingStrategy>())
        {
            m.Configure(strategy: strategy);
            for (int p = 0; p < 3; p++)
                TensorAssert.Close(merged.forward(Ids(p)), m.Forward(Ids(p)), 1e-4, $"{strategy} prompt {p}");
        }
        adapters.ForEach(a => a.Dispose());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void AGateThatAlwaysPicksOneAdapterEqualsThatAdapterAlone(int chosen)
    {
        using var _ = no_grad();
        // Adapter `chosen` at gate index 0 and all gates zero: every logit ties and top-1 takes index 0 — the
        // trace below proves it did, so the comparison is about the mixing, not about tie-breaking luck.
        var order = new[] { Names[chosen] }.Concat(Names.Where((_, i) => i != chosen)).ToList();
        using var m = MeteoraModel.Build(Fixture.Base, Adapters(order), ProjectionSite.AllNames, CPU, ScalarType.Float32);
        m.Configure(topK: 1);
        using var single = LoraModel.Load(Fixture.Base, Fixture.Adapter(Names[chosen]), CPU, ScalarType.Float32);
        foreach (var strategy in Enum.GetValues<MixingStrategy>())
        {
            m.Configure(strategy: strategy);
            using var recorder = new RoutingRecorder { RecordIndices = true };
            m.Attach(recorder);
            var logits = m.Forward(Ids(0));
            m.Attach(null);
            Assert.All(recorder.Trace().Values.SelectMany(v => v).SelectMany(v => v), e => Assert.Equal(0, e));
            TensorAssert.Close(single.forward(Ids(0)), logits, 1e-4, $"{strategy}, adapter {Names[chosen]}");
        }
    }

    [Theory]
    [InlineData(1, 11)]
    [InlineData(2, 12)]
    [InlineData(3, 13)]
    [InlineData(5, 14)]
    public void AllStrategiesAgreeOnRandomStacksWithMixedRanksAndAbsentAdapters(int k, int seed)
    {
        using var _ = no_grad();
        var rng = new Random(seed);
        int n = 6, inF = 3 + rng.Next(40), outF = 3 + rng.Next(40), tokens = 1 + rng.Next(50);
        manual_seed(seed);
        var site = new ProjectionSite(0, "mlp", "up_proj", inF, outF);
        // Ranks 0 (adapter absent here), 1, 4, 8, 16 … mixed.
        var perAdapter = Enumerable.Range(0, n).Select(i =>
        {
            int r = new[] { 0, 1, 4, 8, 16 }[rng.Next(5)];
            return r == 0 ? ((Tensor, Tensor, double)?)null : (randn(r, inF), randn(outF, r), 0.5 + rng.NextDouble());
        }).ToList();
        using var stack = new AdapterStack(site, perAdapter, ScalarType.Float32, CPU);
        var x = randn(tokens, inF);
        var (idx, w) = Router.Route(randn(tokens, n), Math.Min(k, n), 0.7, trainingForm: false);
        var reference = Mixers.Loop(stack, x, idx, w);
        // Independent expectation for one token: Σ_j w_j · s_j B_j A_j x.
        var t0 = zeros(outF);
        for (int j = 0; j < idx.shape[1]; j++)
        {
            int e = (int)idx[0, j].item<long>();
            if (perAdapter[e] is { } p) t0 += w[0, j].item<float>() * p.Item3 * p.Item2.matmul(p.Item1.matmul(x[0]));
        }
        TensorAssert.Close(t0, reference[0], 1e-4, "loop vs hand-written sum");
        foreach (var s in new[] { MixingStrategy.Gather, MixingStrategy.Dense, MixingStrategy.Segment })
            TensorAssert.Close(reference, Mixers.Mix(s, stack, x, idx, w), 1e-4, s.ToString());
    }

    [Fact]
    public void StrategiesAgreeOnAModelWithMixedRanksAndPartialTargets()
    {
        using var dir = Fixture.TempDir();
        var config = LlamaConfig.Load(Fixture.Base);
        manual_seed(4);
        // Three adapters: rank 4 on attention only, rank 8 on everything, rank 2 on the MLP of layer 1 only.
        var specs = new (string Name, int R, string[] Targets, int[]? Layers)[]
        {
            ("attn4", 4, ["q_proj", "k_proj", "v_proj", "o_proj"], null),
            ("all8", 8, ProjectionSite.AllNames, null),
            ("mlp2", 2, ["gate_proj", "up_proj", "down_proj"], [1]),
        };
        var adapters = specs.Select(s =>
        {
            var cfg = new LoraConfig { R = s.R, LoraAlpha = 2 * s.R, TargetModules = s.Targets, LayersToTransform = s.Layers };
            var weights = LoraAdapter.Sites(config).Where(cfg.Targets).Select(site => (site.Key, randn(s.R, site.InFeatures) * 0.2, randn(site.OutFeatures, s.R) * 0.2));
            LoraAdapter.Save(dir[s.Name], cfg, weights.ToList());
            return LoraAdapter.Load(dir[s.Name], config);
        }).ToList();
        using var m = MeteoraModel.Build(Fixture.Base, adapters, ProjectionSite.AllNames, CPU, ScalarType.Float32);
        foreach (var g in m.Projections) g.moe_gate.copy_(randn(g.moe_gate.shape));
        m.SyncGates();
        foreach (int k in new[] { 1, 2, 3 })
        {
            m.Configure(topK: k, temperature: 1.3, strategy: MixingStrategy.Loop);
            using var _ = no_grad();
            var reference = m.Forward(Ids(1));
            foreach (var s in new[] { MixingStrategy.Gather, MixingStrategy.Dense, MixingStrategy.Segment })
            {
                m.Configure(strategy: s);
                TensorAssert.Close(reference, m.Forward(Ids(1)), 1e-4, $"k={k} {s}");
            }
        }
    }
}
