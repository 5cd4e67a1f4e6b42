using System.Text.Json.Nodes;
using Meteora.IO;
using Meteora.Llama;
using Meteora.Lora;
using Meteora.Moe;
using static TorchSharp.torch;

namespace Meteora.Tests.Moe;

public class ArrowTests
{
    private static readonly string[] Names = ["reverse", "add", "upper"];
    private static Tensor Ids(int p) => tensor(Fixture.PromptIds(p).Select(i => (long)i).ToArray(), [1, Fixture.PromptIds(p).Length]);
    private static List<(string, string)> Library(IEnumerable<string> names) => names.Select(n => (n, Fixture.Adapter(n))).ToList();

    /// <summary>Adapter name → projection key → ΔW = s·B A (out, in), float32, read independently of the Arrow code.</summary>
    private static Dictionary<string, Dictionary<string, Tensor>> Deltas(IReadOnlyList<(string Name, string Folder)> library)
    {
        var config = LlamaConfig.Load(Fixture.Base);
        var result = new Dictionary<string, Dictionary<string, Tensor>>();
        foreach (var (name, folder) in library)
        {
            using var a = LoraAdapter.Load(folder, config, name);
            result[name] = a.Weights.ToDictionary(kv => kv.Key, kv => (kv.Value.B.matmul(kv.Value.A) * a.Config.Scale).DetachFromDisposeScope());
        }
        return result;
    }

    /// <summary>
    /// The top right-singular vector of the full ΔW, by torch.linalg.svd in float64 (defined up to sign), and
    /// σ₁ / (σ₁ − σ₂): how much a rounding error in ΔW can turn that vector (large when the top two are close).
    /// </summary>
    private static (Tensor Vector, double Sensitivity) TopRightSingular(Tensor delta)
    {
        var (_, s, vh) = linalg.svd(delta.to(ScalarType.Float64), fullMatrices: false);
        double s1 = s[0].item<double>(), s2 = s[1].item<double>();
        return (vh[0].to(ScalarType.Float32), s1 / (s1 - s2));
    }

    [Fact]
    public void PrototypesAreTheTopRightSingularVectorsOfTheFullDeltas()
    {
        using var _ = no_grad();
        var library = Library(Names);
        using var arrow = ArrowModel.Load(Fixture.Base, library, CPU, ScalarType.Float32, topK: 1);
        var deltas = Deltas(library);
        Assert.Equal(14, arrow.Meteora.Projections.Count);
        foreach (var p in arrow.Meteora.Projections)
            for (int j = 0; j < Names.Length; j++)
            {
                var (v, sensitivity) = TopRightSingular(deltas[Names[j]][p.Site.Key]);
                var proto = p.moe_gate[j];
                Assert.Equal(1.0, proto.norm().item<float>(), 5);
                // float32 rounding (~1e-7 relative) turns the vector by up to about that times the sensitivity
                // (which reaches ~300 on these random adapters); the worst seen is 1.6e-6.
                Assert.True(sensitivity is > 0 and < 1e4, $"{p.Site.Key}, adapter {Names[j]}: top singular value not simple");
                double diff = Math.Min((proto - v).abs().max().item<float>(), (proto + v).abs().max().item<float>());
                Assert.True(diff <= 1e-5 + 1e-7 * sensitivity, $"{p.Site.Key}, adapter {Names[j]}: prototype differs from the SVD by {diff:g3}");
            }
    }

    [Fact]
    public void APrototypeIsZeroForAZeroDeltaAndShapesAreChecked()
    {
        using var proto = ArrowPrototype.Compute(randn(4, 10), zeros(6, 4));
        Assert.Equal([10L], proto.shape);
        Assert.Equal(0f, proto.abs().max().item<float>());
        var e = Assert.Throws<MeteoraException>(() => ArrowPrototype.Compute(randn(4, 10), randn(6, 3)));
        Assert.Contains("(4, 10)", e.Message);
    }

    [Theory]
    [InlineData(1, 1.0)]
    [InlineData(2, 1.0)]
    [InlineData(2, 0.5)]
    [InlineData(3, 2.0)]
    public void OneProjectionEqualsThePlainReferenceForEveryStrategy(int topK, double temperature)
    {
        using var _ = no_grad();
        var library = Library(Names);
        using var arrow = ArrowModel.Load(Fixture.Base, library, CPU, ScalarType.Float32, topK, temperature);
        var deltas = Deltas(library);
        using var baseFile = SafeTensorsFile.Open(Path.Combine(Fixture.Base, "model.safetensors"));
        manual_seed(7);
        foreach (var p in arrow.Meteora.Projections.Where(p => p.Site.Layer == 1))
        {
            var x = randn(2, 5, p.Site.InFeatures);                                       // (B, T, in)
            var reference = new ReferenceArrowLinear(p.Site, Names.Select(n => deltas[n].GetValueOrDefault(p.Site.Key)).ToList(), topK, temperature);
            reference.weight.copy_(baseFile.Load(p.Site.Key + ".weight"));
            var expected = reference.forward(x);
            foreach (var strategy in Enum.GetValues<MixingStrategy>())
            {
                arrow.Configure(strategy: strategy);
                using var recorder = new RoutingRecorder { RecordIndices = true };
                p.Recorder = recorder;
                var y = p.forward(x);
                p.Recorder = null;
                TensorAssert.Close(expected, y, 1e-4, $"{p.Site.Key}, {strategy}, k {topK}, T {temperature}");
                Assert.Equal(reference.LastIndices, recorder.Trace()[p.Site.Key]);
            }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void TheWholeModelEqualsAPlainReferenceModel(int topK)
    {
        using var _ = no_grad();
        var library = Library(Names);
        using var arrow = ArrowModel.Load(Fixture.Base, library, CPU, ScalarType.Float32, topK);
        var deltas = Deltas(library);
        using var reference = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.Float32,
            site => new ReferenceArrowLinear(site, Names.Select(n => deltas[n].GetValueOrDefault(site.Key)).ToList(), topK, 1.0));
        var singles = Names.Select(n => LoraModel.Load(Fixture.Base, Fixture.Adapter(n), CPU, ScalarType.Float32)).ToList();
        for (int prompt = 0; prompt < 2; prompt++)
        {
            var expected = reference.forward(Ids(prompt));
            foreach (var strategy in Enum.GetValues<MixingStrategy>())
            {
                arrow.Configure(strategy: strategy);
                TensorAssert.Close(expected, arrow.Forward(Ids(prompt)), 1e-4, $"prompt {prompt}, {strategy}, k {topK}");
            }
            // Arrow mixes: it is none of the single adapters.
            foreach (var s in singles) Assert.True((s.forward(Ids(prompt)) - expected).abs().max().item<float>() > 1e-3);
        }
        singles.ForEach(s => s.Dispose());
    }

    [Fact]
    public void BFloat16RoutesFromThePrototypesInsideTheFusedGemm()
    {
        // bfloat16 models take the gate logits from the fused [W; A_all; G] GEMM: G must hold the prototypes there too.
        using var _ = no_grad();
        var library = Library(Names);
        using var arrow = ArrowModel.Load(Fixture.Base, library, CPU, ScalarType.BFloat16, topK: 2);
        var deltas = Deltas(library);
        using var baseFile = SafeTensorsFile.Open(Path.Combine(Fixture.Base, "model.safetensors"));
        manual_seed(11);
        foreach (var p in arrow.Meteora.Projections.Where(p => p.Site.Layer == 0))
        {
            var x = randn(1, 6, p.Site.InFeatures).to(ScalarType.BFloat16);                // (1, T, in)
            var reference = new ReferenceArrowLinear(p.Site, Names.Select(n => deltas[n][p.Site.Key]).ToList(), 2, 1.0);
            reference.weight.copy_(baseFile.Load(p.Site.Key + ".weight"));
            var expected = reference.forward(x.to(ScalarType.Float32));
            using var recorder = new RoutingRecorder { RecordIndices = true };
            p.Recorder = recorder;
            var y = p.forward(x);
            p.Recorder = null;
            Assert.Equal(reference.LastIndices, recorder.Trace()[p.Site.Key]);
            TensorAssert.RelativeClose(expected, y, 2e-2, p.Site.Key);
        }
    }

    [Fact]
    public void AnAdapterIsNoCandidateWhereItAdaptsNothing()
    {
        using var _ = no_grad();
        using var dir = Fixture.TempDir();
        // "partial" adapts q_proj only: elsewhere Arrow routes between the other two, even with k = 3.
        string partial = AdapterFolder.Copy(dir, "add", "partial");
        AdapterFolder.EditConfig(partial, c => c["target_modules"] = new JsonArray("q_proj"));
        AdapterFolder.EditWeights(partial, list => list.Where(kv => kv.Key.Contains(".q_proj.")));
        var library = new List<(string, string)> { ("reverse", Fixture.Adapter("reverse")), ("partial", partial), ("upper", Fixture.Adapter("upper")) };
        using var arrow = ArrowModel.Load(Fixture.Base, library, CPU, ScalarType.Float32, topK: 3);
        var deltas = Deltas(library);
        using var reference = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.Float32,
            site => new ReferenceArrowLinear(site, new[] { "reverse", "partial", "upper" }.Select(n => deltas[n].GetValueOrDefault(site.Key)).ToList(), 3, 1.0));
        foreach (var strategy in Enum.GetValues<MixingStrategy>())
        {
            arrow.Configure(strategy: strategy);
            TensorAssert.Close(reference.forward(Ids(0)), arrow.Forward(Ids(0)), 1e-4, $"{strategy}");
        }
        Assert.All(arrow.Meteora.Projections.Where(p => p.Site.Name != "q_proj"), p => Assert.Equal(0f, p.moe_gate[1].abs().max().item<float>()));
    }

    [Fact]
    public void TopKOutsideOneToNIsRefused()
    {
        var library = Library(Names);
        foreach (int k in new[] { 0, 4 })
        {
            var e = Assert.Throws<MeteoraException>(() => ArrowModel.Load(Fixture.Base, library, CPU, ScalarType.Float32, k));
            Assert.Contains("--top-k", e.Message);
        }
    }

    /// <summary>
    /// Arrow written out with plain tensor ops, for comparison: prototypes from the SVD of each full ΔW, scores |P x|
    /// over the adapters present here, top-k, weights softmax(top-k / T) (1 when k = 1), y = W x + Σ w_j ΔW_j x.
    /// </summary>
    private sealed class ReferenceArrowLinear : Linear
    {
        private readonly List<(int Adapter, Tensor Delta, Tensor Proto)> _present;
        private readonly int _k;
        private readonly double _temperature;

        /// <summary>The adapter indices (N·T, k) of the last forward, in descending score order.</summary>
        public long[][] LastIndices { get; private set; } = [];

        public ReferenceArrowLinear(ProjectionSite site, IReadOnlyList<Tensor?> deltas, int k, double temperature)
            : base(site, ScalarType.Float32, CPU)
        {
            _present = deltas.Select((d, j) => (j, d)).Where(t => t.d is not null)
                .Select(t => (t.j, t.d!, TopRightSingular(t.d!).Vector.DetachFromDisposeScope())).ToList();
            _k = k;
            _temperature = temperature;
        }

        public override Tensor forward(Tensor x)
        {
            var x2 = x.reshape(-1, x.shape[^1]);                                          // (N, in)
            var y = x2.matmul(weight.t());                                                // (N, out)
            if (_present.Count > 0)
            {
                var protos = stack(_present.Select(p => p.Proto));                        // (C, in)
                var scores = x2.matmul(protos.t()).abs();                                 // (N, C)
                int k = Math.Min(_k, _present.Count);
                var (top, slot) = scores.topk(k);                                         // (N, k)
                var w = k == 1 ? ones_like(top) : (top / _temperature).softmax(-1);       // (N, k)
                for (int c = 0; c < _present.Count; c++)
                {
                    var coef = (w * (slot == c)).sum(-1, keepdim: true);                  // (N, 1)
                    y = y + coef * x2.matmul(_present[c].Delta.t());
                }
                var owner = tensor(_present.Select(p => (long)p.Adapter).ToArray());
                var chosen = owner.index_select(0, slot.reshape(-1)).reshape(-1, k);
                LastIndices = Enumerable.Range(0, (int)chosen.shape[0]).Select(i => chosen[i].data<long>().ToArray()).ToArray();
            }
            return y.reshape([.. x.shape[..^1], y.shape[^1]]);
        }
    }
}
