using Meteora.Benchmarking;
using Meteora.Moe;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Tests.Moe;

/// <summary>The selective mix kernels (MeteoRA at decode sizes): they compile for our GPUs and, on CUDA, give the dense path's output.</summary>
public class SelectiveMixKernelTests
{
    [NvrtcFact]
    public void TheKernelsCompileForHopperAndAmpere()
    {
        foreach (var cubin in CubinAssert.CompilesForHopperAndAmpere(SelectiveMixKernel.Source, "meteora_selective_mix.cu", "meteora_shrink_bf16", "meteora_expand_bf16"))
            Assert.True(cubin.Length > 1000, $"{cubin.Length}-byte CUBIN");
    }

    [Fact]
    public void OnTheCpuMeteoraMixesOnTheFusedGemm() =>
        Assert.Equal("the fused GEMM's dense mix (CPU)", SelectiveMixKernel.Describe(CPU));

    [Fact]
    public void TheExpandRefusesATopKItCannotRankBeforeLaunching()
    {
        // k > L would leave slots without an adapter (index 0x7fffffff, then out-of-row reads): refused on the host.
        using var h = zeros(1, 2 + 2 * 8);
        using var b = zeros(16, 2 * 8, ScalarType.BFloat16);
        using var y = zeros(1, 16, ScalarType.BFloat16);
        var e = Assert.Throws<ArgumentException>(() => SelectiveMixKernel.Expand(null!, h, b, y, adapters: 2, rank: 8, topK: 3, temperature: 1.0));
        Assert.Contains("top-3 of 2 adapters", e.Message);
    }

    [Fact]
    public void TheShrinkRefusesAnInputOffA16ByteBoundary()
    {
        // A (1, 64) view that starts 4 elements (8 bytes) into its row is contiguous but misaligned for 16-byte loads.
        using var row = zeros(1, 68, ScalarType.BFloat16);
        using var x = row.narrow(1, 4, 64);
        Assert.True(x.is_contiguous());
        Assert.False(SelectiveMixKernel.Aligned(x));
        using var gate = zeros(2, 64);
        using var a = zeros(16, 64, ScalarType.BFloat16);
        using var b = zeros(8, 16, ScalarType.BFloat16);
        using var y = zeros(1, 8, ScalarType.BFloat16);
        var e = Assert.Throws<ArgumentException>(() => SelectiveMixKernel.Apply((null!, null!), x, gate, a, b, y, 2, 8, 1, 1.0));
        Assert.Contains("16-byte aligned", e.Message);
    }

    [Fact]
    public void TheExpandSegmentStructsHaveTheKernelsCLayout()
    {
        // ExpandSegment: 3 pointers, a long long, 4 ints, a float, an int (56 bytes); three and a count (176).
        Assert.Equal(56, System.Runtime.InteropServices.Marshal.SizeOf<SelectiveMixKernel.ExpandSegment>());
        Assert.Equal(176, System.Runtime.InteropServices.Marshal.SizeOf<SelectiveMixKernel.ExpandSegments>());
        Assert.Equal(32, (int)System.Runtime.InteropServices.Marshal.OffsetOf<SelectiveMixKernel.ExpandSegment>(nameof(SelectiveMixKernel.ExpandSegment.Out)));
        Assert.Equal(48, (int)System.Runtime.InteropServices.Marshal.OffsetOf<SelectiveMixKernel.ExpandSegment>(nameof(SelectiveMixKernel.ExpandSegment.InvT)));
        Assert.Equal(168, (int)System.Runtime.InteropServices.Marshal.OffsetOf<SelectiveMixKernel.ExpandSegments>(nameof(SelectiveMixKernel.ExpandSegments.Count)));
        Assert.Contains("struct ExpandSegment { bf16* y; const float* h; const bf16* B; long long ys; int out; int L; int r; int k; float invT; int blockStart; };", SelectiveMixKernel.Source);
    }

    [Fact]
    public void OnTheCpuProjectionsAreNotGrouped()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var routing = new RoutingOptions { TopK = 2 };
        // bfloat16, as on CUDA: only the device keeps them apart (float32 would be refused for its dtype already).
        using var a = LayerBenchmark.Build(64, 48, 6, 8, routing, CPU, ScalarType.BFloat16);
        using var b = LayerBenchmark.Build(64, 32, 6, 8, routing, CPU, ScalarType.BFloat16);
        Assert.Null(a.TryForwardGroup([a, b], randn(1, 1, 64, ScalarType.BFloat16)));
    }

    [CudaFact]
    public void OnCudaItGivesTheFusedGemmPathsOutputAtDecodeSizes()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        manual_seed(11);
        Assert.StartsWith("selective mix kernels", SelectiveMixKernel.Describe(CUDA));   // else both sides below take the fused path
        bool was = SelectiveMixKernel.Enabled;
        try
        {
            // 8B-shaped projections with 28 adapters of rank 8 as `bench model` runs them; 40 adapters (past one logit per
            // lane), top-1, rank 4 (the scalar B loop) and the 14 336- and 28 672-wide rows (several shrink passes).
            foreach (var (inF, outF, L, r, k) in new[] { (4096, 1024, 28, 8, 2), (4096, 1024, 40, 8, 2), (4096, 4096, 28, 8, 1),
                                                          (4096, 1024, 28, 4, 2), (14336, 4096, 28, 8, 2), (28672, 1024, 8, 8, 2) })
            {
                var routing = new RoutingOptions { TopK = k };
                using var layer = LayerBenchmark.Build(inF, outF, L, r, routing, CUDA, ScalarType.BFloat16);
                foreach (int n in new[] { 1, 5, 16 })
                {
                    var x = randn(n, inF, ScalarType.BFloat16, CUDA);
                    SelectiveMixKernel.Enabled = true;
                    var on = layer.forward(x).to(ScalarType.Float32);
                    SelectiveMixKernel.Enabled = false;
                    var off = layer.forward(x).to(ScalarType.Float32);
                    // The same adapters and weights; only float32 summation order differs: one bfloat16 rounding of the output.
                    var diff = (on - off).abs();
                    Assert.True(diff.le(off.abs() * (1.0 / 128) + 1e-3).all().item<bool>(),
                        $"{inF}→{outF}, L {L}, r {r}, k {k}, N {n}: max |on − off| {diff.max().item<float>()}");
                }
            }
        }
        finally { SelectiveMixKernel.Enabled = was; }
    }

    [CudaFact]
    public void OnCudaGroupedDecodeGivesEachProjectionsOwnOutput()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        manual_seed(12);
        var routing = new RoutingOptions { TopK = 2 };
        // q, k, v: k and v differ (Build seeds every layer alike, so v gets 27 adapters: 1 024 + 27 + 216 rows, a last
        // block half full), so a segment swapped or leaking into the next shows.
        using var q = LayerBenchmark.Build(4096, 4096, 28, 8, routing, CUDA, ScalarType.BFloat16);
        using var k = LayerBenchmark.Build(4096, 1024, 28, 8, routing, CUDA, ScalarType.BFloat16);
        using var v = LayerBenchmark.Build(4096, 1024, 27, 8, new RoutingOptions { TopK = 1 }, CUDA, ScalarType.BFloat16);
        // gate and up: two segments of 14 336 rows, the second with other weights.
        using var gate = LayerBenchmark.Build(4096, 14336, 28, 8, routing, CUDA, ScalarType.BFloat16);
        using var up = LayerBenchmark.Build(4096, 14336, 28, 8, routing, CUDA, ScalarType.BFloat16);
        using Scalar minusOne = -1.0;                                                     // held for the op
        up.weight.mul_(minusOne);
        var x = randn(1, 1, 4096, ScalarType.BFloat16, CUDA);
        foreach (var group in new[] { new[] { q, k, v }, new[] { gate, up } })
        {
            var grouped = group[0].TryForwardGroup(group, x) ?? throw new Xunit.Sdk.XunitException("not grouped on CUDA");
            for (int i = 0; i < group.Length; i++)
                Assert.True(grouped[i].eq(group[i].forward(x)).all().item<bool>(), $"projection {i} of {group.Length}: the same kernels, so the same bits");
        }
    }
}

