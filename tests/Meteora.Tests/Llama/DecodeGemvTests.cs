using Meteora.Llama;
using Meteora.Tests.Moe;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Tests.Llama;

/// <summary>The decode GEMV kernel (MeteoRA's one-token projections): it compiles for our GPUs, stays off the CPU path, and on CUDA matches the GEMM.</summary>
public class DecodeGemvTests
{
    [NvrtcFact]
    public void TheKernelCompilesForHopperAndAmpere()
    {
        foreach (var cubin in CubinAssert.CompilesForHopperAndAmpere(DecodeGemv.Source, "meteora_gemv_bf16.cu", "meteora_gemv_bf16"))
            Assert.True(cubin.Length > 1000, $"{cubin.Length}-byte CUBIN");
    }

    [Fact]
    public void OnTheCpuItDoesNotApply()
    {
        using var x = randn(1, 64, ScalarType.BFloat16);
        using var w = randn(32, 64, ScalarType.BFloat16);
        Assert.False(DecodeGemv.Applies(x, w));
        Assert.Equal("ATen GEMM (CPU)", DecodeGemv.Describe(CPU));
    }

    [Theory]
    [InlineData(4096, 2)]     // one pass of 2 048 inputs per warp
    [InlineData(14336, 8)]    // the down projection: 1 792 per warp
    [InlineData(2048, 1)]
    [InlineData(200, 1)]
    [InlineData(4104, 1)]     // 4104 = 8·513: two warps would get 2 052, not whole 8-wide chunks
    public void LongRowsAreSplitOverWarpsInWholeChunks(int inFeatures, int group)
    {
        Assert.Equal(group, DecodeGemv.GroupFor(inFeatures));
        Assert.Equal(0, inFeatures % (8 * group));
    }

    [Fact]
    public void TheSegmentStructsHaveTheKernelsCLayout()
    {
        // The kernel reads its GemvSegments parameter with C's layout: 5 pointers, 2 long longs, 4 ints (72 bytes, 8-aligned),
        // three of them and a count (padded to 224). A field out of place would hand the kernel wrong pointers.
        Assert.Equal(72, System.Runtime.InteropServices.Marshal.SizeOf<DecodeGemv.GemvSegment>());
        Assert.Equal(224, System.Runtime.InteropServices.Marshal.SizeOf<DecodeGemv.GemvSegments>());
        Assert.Equal(40, (int)System.Runtime.InteropServices.Marshal.OffsetOf<DecodeGemv.GemvSegment>(nameof(DecodeGemv.GemvSegment.Ldw)));
        Assert.Equal(56, (int)System.Runtime.InteropServices.Marshal.OffsetOf<DecodeGemv.GemvSegment>(nameof(DecodeGemv.GemvSegment.L)));
        Assert.Equal(216, (int)System.Runtime.InteropServices.Marshal.OffsetOf<DecodeGemv.GemvSegments>(nameof(DecodeGemv.GemvSegments.Count)));
        Assert.Contains("struct GemvSegment { const float* G; const bf16* W; const bf16* A; bf16* y; float* h; long long ldw; long long ys;", DecodeGemv.Source);
    }

    [CudaFact]
    public void OnCudaItMatchesTheGemmAndTheFloat32AdapterRows()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        manual_seed(2);
        foreach (int n in new[] { 1, 3, 8 })
        foreach (int inF in new[] { 4096, 14336, 200 })
        {
            var x = randn(n, inF, ScalarType.BFloat16, CUDA);
            var w = randn(1000, inF, ScalarType.BFloat16, CUDA) * 0.02;
            var gate = randn(28, inF, ScalarType.Float32, CUDA);
            var a = (randn(224, inF, ScalarType.BFloat16, CUDA) * 0.02).contiguous();
            // The paths hand it one token (DecodeGemv.MaxTokens); the kernel itself takes up to eight.
            Assert.Equal(n <= DecodeGemv.MaxTokens, DecodeGemv.Applies(x, w));
            var (y, h) = DecodeGemv.ApplyWithAdapters(x, w, gate, a);
            var reference = x.to(ScalarType.Float32).matmul(w.to(ScalarType.Float32).t());            // (N, 1000)
            var diff = (y.to(ScalarType.Float32) - reference).abs();
            Assert.True(diff.le(reference.abs() * (1.0 / 128) + 1e-3).all().item<bool>(), $"N {n}, in {inF}: max |y − x Wᵀ| {diff.max().item<float>()}");
            var hRef = cat([x.to(ScalarType.Float32).matmul(gate.t()), x.to(ScalarType.Float32).matmul(a.to(ScalarType.Float32).t())], 1);
            Assert.True((h - hRef).abs().le(hRef.abs() * 1e-4 + 1e-3).all().item<bool>(), $"N {n}, in {inF}: h");
            Assert.True(DecodeGemv.Apply(x, w).eq(y).all().item<bool>(), "the plain launch gives the same base rows");
        }
    }
}
