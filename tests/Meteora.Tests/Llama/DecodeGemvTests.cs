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

    [Fact]
    public void TheSegmentStructsHaveTheKernelsCLayout()
    {
        // The kernel reads its GemvSegments parameter with C's layout: 2 pointers, a long long, 3 ints (36 bytes, padded to
        // 40), nine of them and a count (padded to 368). A field out of place would hand the kernel wrong pointers. The
        // launch passes the managed struct's bytes, so the managed layout (InlineArray included) is what must match.
        var v = default(DecodeGemv.GemvSegments);
        ref byte start = ref System.Runtime.CompilerServices.Unsafe.As<DecodeGemv.GemvSegments, byte>(ref v);
        Assert.Equal(40, System.Runtime.CompilerServices.Unsafe.SizeOf<DecodeGemv.GemvSegment>());
        Assert.Equal(368, System.Runtime.CompilerServices.Unsafe.SizeOf<DecodeGemv.GemvSegments>());
        Assert.Equal(360, (int)System.Runtime.CompilerServices.Unsafe.ByteOffset(ref start,
            ref System.Runtime.CompilerServices.Unsafe.As<int, byte>(ref v.Count)));
        Assert.Equal(80, (int)System.Runtime.CompilerServices.Unsafe.ByteOffset(ref start,
            ref System.Runtime.CompilerServices.Unsafe.As<DecodeGemv.GemvSegment, byte>(ref v.S[2])));
        Assert.Equal(16, (int)System.Runtime.InteropServices.Marshal.OffsetOf<DecodeGemv.GemvSegment>(nameof(DecodeGemv.GemvSegment.Ld)));
        Assert.Equal(32, (int)System.Runtime.InteropServices.Marshal.OffsetOf<DecodeGemv.GemvSegment>(nameof(DecodeGemv.GemvSegment.BlockStart)));
        Assert.Contains("struct GemvSegment { const void* M; void* out; long long ld; int rows; int kind; int blockStart; };", DecodeGemv.Source);
        Assert.Contains("struct GemvSegments { GemvSegment s[MAXSEG]; int count; };", DecodeGemv.Source);
        Assert.Contains("#define MAXSEG 9", DecodeGemv.Source);
    }

    [Fact]
    public void ProjectOnTheCpuIsAtensLinear()
    {
        // The CPU path stays bit for bit what it was: Linear.forward and the LM head go through Project.
        manual_seed(4);
        using var x = randn(1, 1, 64);
        using var w = randn(32, 64);
        using var y = DecodeGemv.Project(x, w);
        using var reference = nn.functional.linear(x, w);
        Assert.Equal(new long[] { 1, 1, 32 }, y.shape);
        Assert.True(y.eq(reference).all().item<bool>());
        Assert.Null(DecodeGemv.TryProjectGroup(x, [w, w]));
    }

    [CudaFact]
    public void OnCudaItMatchesTheGemmAndTheFloat32AdapterRows()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        manual_seed(2);
        foreach (int inF in new[] { 4096, 14336, 200, 24 })
        foreach (int rows in new[] { 1000, 7, 28672 })
        {
            var x = randn(1, inF, ScalarType.BFloat16, CUDA);
            var w = randn(rows, inF, ScalarType.BFloat16, CUDA) * 0.02;
            var gate = randn(28, inF, ScalarType.Float32, CUDA);
            var a = (randn(224, inF, ScalarType.BFloat16, CUDA) * 0.02).contiguous();
            Assert.True(DecodeGemv.Applies(x, w));
            Assert.False(DecodeGemv.Applies(x, w.narrow(0, 0, 0)));                                // no rows: ATen's linear
            Assert.Equal(new long[] { 1, 0 }, DecodeGemv.Project(x, w.narrow(0, 0, 0)).shape);
            Assert.False(DecodeGemv.Applies(randn(2, inF, ScalarType.BFloat16, CUDA), w));   // one token only
            var (y, h) = DecodeGemv.ApplyWithAdapters(x, w, gate, a);
            var reference = x.to(ScalarType.Float32).matmul(w.to(ScalarType.Float32).t());            // (1, rows)
            var diff = (y.to(ScalarType.Float32) - reference).abs();
            Assert.True(diff.le(reference.abs() * (1.0 / 128) + 1e-3).all().item<bool>(), $"in {inF}, rows {rows}: max |y − x Wᵀ| {diff.max().item<float>()}");
            var hRef = cat([x.to(ScalarType.Float32).matmul(gate.t()), x.to(ScalarType.Float32).matmul(a.to(ScalarType.Float32).t())], 1);
            Assert.True((h - hRef).abs().le(hRef.abs() * 1e-4 + 1e-3).all().item<bool>(), $"in {inF}, rows {rows}: h");
            Assert.True(DecodeGemv.Apply(x, w).eq(y).all().item<bool>(), "the plain launch gives the same base rows");
            // A row block of a larger buffer (the fused q/k/v) and a group of three: the same rows as alone.
            var buffer = randn(rows + 16, inF, ScalarType.BFloat16, CUDA);
            var view = buffer.narrow(0, 8, rows);
            Assert.True(DecodeGemv.Project(x.view(1, 1, inF), view).view(1, rows).eq(DecodeGemv.Apply(x, view.contiguous())).all().item<bool>(), "a row-block view");
            var group = DecodeGemv.TryProjectGroup(x, [w, view, w])!;
            Assert.True(group[0].eq(y).all().item<bool>() && group[2].eq(y).all().item<bool>(), "grouped rows equal the lone launch's");
        }
    }
}
