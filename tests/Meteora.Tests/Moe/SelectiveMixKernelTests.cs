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
}
