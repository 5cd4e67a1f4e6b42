using Meteora.Llama;
using Meteora.Moe;
using static TorchSharp.torch;

namespace Meteora.Tests.Moe;

/// <summary>
/// bfloat16 MeteoRA picks exactly the adapters its float32 gate picks on the same inputs, with the float32 gate's weights
/// (issue #18, "Fidelity in bfloat16"): every token is ranked from one float32 GEMM of its input with the float32 gate;
/// the near-tie bound remains as a diagnostic of how often the fused GEMM's logits alone would not do.
/// </summary>
public class ExactRankingTests
{
    private const int In = 256, Out = 64, N = 8, Rank = 4;

    /// <summary>
    /// A bfloat16 projection on the CPU whose gate rows differ by ~1 % (a trained gate's near-ties, many of them):
    /// its float32 gate is returned beside it.
    /// </summary>
    private static (MeteoraLinear Projection, Tensor Gate, RoutingOptions Routing) NearTieProjection(int seed)
    {
        manual_seed(seed);
        var site = new ProjectionSite(1, "mlp", "up_proj", In, Out);
        var perAdapter = Enumerable.Range(0, N).Select(_ => ((Tensor, Tensor, double)?)(randn(Rank, In) * 0.05, randn(Out, Rank) * 0.05, 2.0)).ToList();
        var routing = new RoutingOptions { Strategy = MixingStrategy.Dense };
        var p = MeteoraLinear.Create(site, perAdapter, routing, ScalarType.BFloat16, ScalarType.BFloat16, CPU);
        var gate = randn(1, In).expand(N, In) * 0.1 + randn(N, In) * 0.001;                 // (N, in) float32
        using (no_grad()) { p.moe_gate.copy_(gate); p.SyncFusedGate(); }
        return (p, gate.contiguous(), routing);
    }

    private static HashSet<long> Set(IEnumerable<long> xs) => xs.ToHashSet();

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void TheBFloat16ProjectionPicksTheFloat32GatesTopK(int k)
    {
        using var _ = no_grad();
        var (p, gate, routing) = NearTieProjection(10 + k);
        routing.TopK = k;
        using var recorder = new RoutingRecorder { RecordIndices = true, RecordNearTies = true };
        p.Recorder = recorder;
        var x = randn(1, 300, In).to(ScalarType.BFloat16);                                  // (1, T, in)
        p.forward(x);
        var picked = recorder.Trace()[p.Site.Key];                                           // (T, k)
        var exact = nn.functional.linear(x.reshape(-1, In).to(ScalarType.Float32), gate).topk(k, -1).indexes;   // (T, k)
        var low = x.reshape(-1, In).matmul(gate.to(ScalarType.BFloat16).t()).topk(k, -1).indexes;              // the fused GEMM's ranking alone
        int lowDiffers = 0;
        for (int t = 0; t < picked.Length; t++)
        {
            var want = Set(exact[t].data<long>().ToArray());
            Assert.True(want.SetEquals(picked[t]), $"token {t}: picked {string.Join(',', picked[t])}, the float32 gate {string.Join(',', want)}");
            if (!want.SetEquals(low[t].data<long>().ToArray())) lowDiffers++;
        }
        // The case this test is about: ranked on the low-precision logits alone, many tokens would differ.
        Assert.True(lowDiffers >= 30, $"only {lowDiffers} of {picked.Length} tokens rank differently in bfloat16: no near-ties to test");
        // Every token the bfloat16 logits would misrank was near a tie by the bound (else the bound is unsound).
        Assert.InRange(recorder.NearTies[p.Site.Key], lowDiffers, picked.Length);
        p.Dispose();
    }

    [Fact]
    public void PerRowRoutingPicksTheFloat32GatesTopKForEachRowsK()
    {
        using var _ = no_grad();
        var (p, gate, routing) = NearTieProjection(21);
        using var rows = new RowRouting(3, N, layers: 2, groups: 0, CPU);
        rows.SetGates(0, topK: 1, temperature: 1.0);
        rows.SetGates(1, topK: 3, temperature: 0.7);
        rows.SetAdapter(2, 5);
        rows.Upload();
        routing.Rows = rows;
        using var recorder = new RoutingRecorder { RecordIndices = true, RecordWeights = true };
        p.Recorder = recorder;
        var x = randn(3, 120, In).to(ScalarType.BFloat16);                                  // (B, T, in)
        p.forward(x);
        var weights = recorder.Weights()[p.Site.Key];                                        // (B·T, N) dense
        var logits = nn.functional.linear(x.reshape(-1, In).to(ScalarType.Float32), gate);   // (B·T, N)
        for (int t = 0; t < weights.Length; t++)
        {
            int row = t / 120;
            var chosen = Set(Enumerable.Range(0, N).Where(j => weights[t][j] > 0).Select(j => (long)j));
            var want = row == 2 ? [5L] : Set(logits[t].topk(row == 0 ? 1 : 3).indexes.data<long>().ToArray());
            Assert.True(want.SetEquals(chosen), $"row {row} token {t % 120}: chosen {string.Join(',', chosen)}, want {string.Join(',', want)}");
        }
        // One token per row as a (B, in) input (a decode step's shape): still each row's own k. Adapter 0 leads by far
        // and the rest are near-tied, so testing the gap at the wrong k (1 instead of 3) would trust a bfloat16 ranking.
        using (no_grad())
        {
            var u = randn(In) * 0.1;
            var lead = cat([(u * 2).unsqueeze(0), u.unsqueeze(0).expand(N - 1, In) + randn(N - 1, In) * 0.001]);   // (N, in)
            p.moe_gate.copy_(lead); p.SyncFusedGate();
            gate = lead;
        }
        int decisions = 0;
        for (int trial = 0; trial < 60; trial++)
        {
            using var step = new RoutingRecorder { RecordWeights = true };
            p.Recorder = step;
            var dir = gate[0] / gate[0].norm();
            var x1 = (randn(3, In) + dir.unsqueeze(0) * 8).to(ScalarType.BFloat16);         // (B, in): adapter 0 first
            p.forward(x1);
            var w1 = step.Weights()[p.Site.Key];                                             // (B, N)
            var l1 = nn.functional.linear(x1.to(ScalarType.Float32), gate);
            var chosen = Set(Enumerable.Range(0, N).Where(j => w1[1][j] > 0).Select(j => (long)j));
            Assert.True(Set(l1[1].topk(3).indexes.data<long>().ToArray()).SetEquals(chosen), $"trial {trial}, (B, in) row 1 (k = 3)");
            decisions++;
        }
        Assert.Equal(60, decisions);
        p.Dispose();
    }

    [Fact]
    public void TheRoutingWeightsAreTheFloat32GatesSoftmax()
    {
        using var _ = no_grad();
        var (p, gate, routing) = NearTieProjection(31);
        routing.TopK = 2;
        routing.Temperature = 0.5;
        using var recorder = new RoutingRecorder { RecordIndices = true, RecordWeights = true };
        p.Recorder = recorder;
        var x = randn(1, 50, In).to(ScalarType.BFloat16);                                   // (1, T, in)
        p.forward(x);
        var weights = recorder.Weights()[p.Site.Key];                                        // (T, 2)
        var top = nn.functional.linear(x.reshape(-1, In).to(ScalarType.Float32), gate).topk(2, -1).values;   // (T, 2)
        var want = (top / 0.5).softmax(-1);                                                  // (T, 2) float32
        for (int t = 0; t < weights.Length; t++)
            for (int s = 0; s < 2; s++)
                Assert.Equal(want[t, s].item<float>(), weights[t][s], 5);
        p.Dispose();
    }

    [Fact]
    public void TheNearTieDiagnosticFlagsGapsWithinTwiceTheBound()
    {
        using var _ = no_grad();
        manual_seed(3);
        var gate = randn(4, In);                                                             // (L, in) float32
        var x = randn(2, In).to(ScalarType.BFloat16);                                        // (2, in)
        var coefficients = ExactRanking.Coefficients(ScalarType.BFloat16, In, gate.square().sum(-1).sqrt().max().item<float>());
        // Row 0: the low-precision logits far apart (10, 0, -10, -20); row 1: a tie between the 1st and 2nd.
        var low = tensor(new float[] { 10, 0, -10, -20, 3, 3, -1, -2 }, [2, 4]).to(ScalarType.BFloat16);
        var pastTop1 = tensor(new[] { false, true, true, true }).unsqueeze(0);               // k = 1
        Assert.Equal(new[] { false, true }, ExactRanking.NearTies(low, x, coefficients, pastTop1).data<bool>().ToArray());
        // At k = L nothing is left out, so no row is near.
        Assert.Equal(new[] { false, false }, ExactRanking.NearTies(low, x, coefficients, zeros(1, 4, ScalarType.Bool)).data<bool>().ToArray());
    }

    [Fact]
    public void TheBoundGrowsWithTheInputWidthAndTheGatesNorm()
    {
        var (x1, abs1) = ExactRanking.Coefficients(ScalarType.BFloat16, 4096, 1.0);
        var (x2, _) = ExactRanking.Coefficients(ScalarType.BFloat16, 14336, 1.0);
        var (x3, _) = ExactRanking.Coefficients(ScalarType.BFloat16, 4096, 2.0);
        var (x16, abs16) = ExactRanking.Coefficients(ScalarType.Float16, 4096, 1.0);
        Assert.InRange(x1, 2 * Math.Pow(2, -8), 2 * Math.Pow(2, -8) + 3 * 4096 * Math.Pow(2, -24));
        Assert.True(x2 > x1 && Math.Abs(x3 - 2 * x1) < 1e-12 && x16 < x1 && abs16 < abs1);
        Assert.Throws<ArgumentException>(() => ExactRanking.Coefficients(ScalarType.Float32, 4096, 1.0));
    }
}
