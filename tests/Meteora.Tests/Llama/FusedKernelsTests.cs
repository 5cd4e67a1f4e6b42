using Meteora.Llama;
using Meteora.Tests.Moe;
using static TorchSharp.torch;

namespace Meteora.Tests.Llama;

/// <summary>
/// The fused elementwise kernels (<see cref="FusedKernels"/>): their source compiles for the GPUs we run on, the CPU
/// never takes them, and on CUDA they give the ATen chain's bfloat16 results (bench/device-fused.sh checks the
/// whole model on a GPU: logits and tokens with the kernels on and off).
/// </summary>
public class FusedKernelsTests
{
    [NvrtcFact]
    public void EveryEntryPointCompilesForHopperAndAmpere()
    {
        CubinAssert.CompilesForHopperAndAmpere(FusedKernels.Source, "meteora_fused.cu", "meteora_rmsnorm_bf16", "meteora_rmsnorm8_bf16", "meteora_rotary_bf16", "meteora_silu_mul8_bf16", "meteora_silu_mul_bf16");
    }

    [Fact]
    public void OnTheCpuEveryOpTakesTheAtenPath()
    {
        Assert.Equal("ATen elementwise ops (CPU)", FusedKernels.Describe(CPU));
        using var x = randn(2, 3, 8, dtype: ScalarType.BFloat16);
        using var w = ones(8, dtype: ScalarType.BFloat16);
        Assert.Null(FusedKernels.RmsNorm(x, null, w, 1e-5f));
        Assert.Null(FusedKernels.RmsNorm(x, x, w, 1e-5f));
        Assert.Null(FusedKernels.SiluMul(x, x));
        using var q = randn(1, 3, 2, 8, dtype: ScalarType.BFloat16);
        using var cs = randn(1, 3, 1, 8, dtype: ScalarType.BFloat16);
        Assert.Null(FusedKernels.Rotary(q, q, cs, cs));
    }

    [CudaFact]
    public void OnCudaTheVectorKernelsEqualTheElementLoopsOnEveryShape()
    {
        // The vector kernel (aligned rows of whole 16-byte chunks) against the column-loop kernel it replaces: the same
        // sum bit for bit, the normalised rows within one bfloat16 step (the sum of squares runs in another order);
        // one and two chunks per thread, with and without a residual, and a row view off a 16-byte boundary (the loop).
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        manual_seed(5);
        var bf = ScalarType.BFloat16;
        bool was = FusedKernels.VectorNorm, wasSilu = FusedKernels.VectorSilu;
        try
        {
            foreach (int cols in new[] { 8, 264, 4096, 8200, 16384 })
            foreach (bool withResidual in new[] { true, false })
            {
                var x = randn(3, cols, dtype: bf, device: CUDA);
                var r = withResidual ? randn(3, cols, dtype: bf, device: CUDA) : null;
                var w = (randn(cols, device: CUDA) * 0.1 + 1).to(bf);
                FusedKernels.VectorNorm = true;
                var vector = FusedKernels.RmsNorm(x, r, w, 1e-5f)!.Value;
                FusedKernels.VectorNorm = false;
                var loop = FusedKernels.RmsNorm(x, r, w, 1e-5f)!.Value;
                Assert.True(vector.Sum.equal(loop.Sum).all().item<bool>(), $"{cols} columns: residual sums differ");
                var diff = (vector.Normalized.to(ScalarType.Float32) - loop.Normalized.to(ScalarType.Float32)).abs();
                Assert.True(diff.le(loop.Normalized.to(ScalarType.Float32).abs() / 128 + 1e-6).all().item<bool>(), $"{cols} columns: max |diff| {diff.max().item<float>()}");
            }
            // SiLU·up eight columns at a time: the same bits as one element at a time (a column slice of a wider output too).
            foreach (int cols in new[] { 8, 704, 14336 })
            {
                var gu = randn(4, 2 * cols + 8, dtype: bf, device: CUDA) * 3;
                var (g, u) = (gu.narrow(1, 0, cols), gu.narrow(1, cols + 8, cols));
                FusedKernels.VectorSilu = true;
                var vector = FusedKernels.SiluMul(g, u)!;
                FusedKernels.VectorSilu = false;
                Assert.True(vector.equal(FusedKernels.SiluMul(g, u)!).all().item<bool>(), $"SiLU·up, {cols} columns");
                FusedKernels.VectorSilu = true;
            }
            FusedKernels.VectorNorm = true;
            var wide = randn(2, 4100, dtype: bf, device: CUDA);
            var off = wide.narrow(1, 4, 4096);                                                    // 8 bytes off a 16-byte boundary
            var w2 = ones(4096, dtype: bf, device: CUDA);
            var viaLoop = FusedKernels.RmsNorm(off, null, w2, 1e-5f)!.Value.Normalized;
            var viaCopy = FusedKernels.RmsNorm(off.contiguous(), null, w2, 1e-5f)!.Value.Normalized;
            Assert.True((viaLoop.to(ScalarType.Float32) - viaCopy.to(ScalarType.Float32)).abs().le(viaCopy.to(ScalarType.Float32).abs() / 128 + 1e-6).all().item<bool>());
        }
        finally { FusedKernels.VectorNorm = was; FusedKernels.VectorSilu = wasSilu; }
    }

    [CudaFact]
    public void OnCudaTheKernelsGiveTheAtenChainsResults()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var dev = CUDA;
        manual_seed(3);
        var bf = ScalarType.BFloat16;
        var x = randn(5, 7, 4096, dtype: bf, device: dev);
        var r = randn(5, 7, 4096, dtype: bf, device: dev);
        var w = (randn(4096, device: dev) * 0.1 + 1).to(bf);
        var norm = new RmsNorm("n", 4096, 1e-5, bf, dev);
        norm.weight.copy_(w);

        var fused = FusedKernels.RmsNorm(x, r, w, 1e-5f) ?? throw new Xunit.Sdk.XunitException("the fused norm did not run on CUDA");
        var sum = x + r;
        Assert.True(fused.Sum.equal(sum).all().item<bool>(), "residual sum differs from ATen's bfloat16 add");
        FusedKernels.Enabled = false;
        Tensor reference;
        try { reference = norm.forward(sum); } finally { FusedKernels.Enabled = true; }
        // The RMS is reduced in another order: at most one bfloat16 step (2⁻⁷ relative) apart.
        var diff = (fused.Normalized.to(ScalarType.Float32) - reference.to(ScalarType.Float32)).abs();
        var bound = reference.to(ScalarType.Float32).abs() * (1.0 / 128) + 1e-6;
        Assert.True(diff.le(bound).all().item<bool>(), $"norm: max |diff| {diff.max().item<float>()}");

        var g = randn(3, 2, 14336, dtype: bf, device: dev) * 3;
        var u = randn(3, 2, 14336, dtype: bf, device: dev);
        var silu = FusedKernels.SiluMul(g, u)!;
        var siluRef = nn.functional.silu(g) * u;
        Assert.True((silu.to(ScalarType.Float32) - siluRef.to(ScalarType.Float32)).abs().le(siluRef.to(ScalarType.Float32).abs() / 128 + 1e-6).all().item<bool>());

        var q = randn(2, 5, 32, 128, dtype: bf, device: dev);
        var k = randn(2, 5, 8, 128, dtype: bf, device: dev);
        var angles = randn(2, 5, 1, 128, device: dev) * 3;
        var cos = angles.cos().to(bf); var sin = angles.sin().to(bf);
        var (qo, ko) = FusedKernels.Rotary(q, k, cos, sin)!.Value;
        Assert.True(qo.equal(RotaryEmbedding.Apply(q, cos, sin)).all().item<bool>(), "rotary q differs from ATen's");
        Assert.True(ko.equal(RotaryEmbedding.Apply(k, cos, sin)).all().item<bool>(), "rotary k differs from ATen's");

        // Column slices of a wider GEMM output (a MeteoRA projection's output): strided rows, the same results.
        var wide = randn(10, 32 * 128 + 8 * 128 + 40, dtype: bf, device: dev);                      // (B·T, q | k | extra)
        var qs = wide.narrow(1, 0, 32 * 128).view(2, 5, 32, 128);
        var ks = wide.narrow(1, 32 * 128, 8 * 128).view(2, 5, 8, 128);
        Assert.False(qs.is_contiguous());
        var (qso, kso) = FusedKernels.Rotary(qs, ks, cos, sin) ?? throw new Xunit.Sdk.XunitException("rotary refused strided rows");
        Assert.True(qso.equal(RotaryEmbedding.Apply(qs, cos, sin)).all().item<bool>(), "rotary of strided q differs from ATen's");
        Assert.True(kso.equal(RotaryEmbedding.Apply(ks, cos, sin)).all().item<bool>(), "rotary of strided k differs from ATen's");
        var gu = randn(6, 2 * 14336 + 64, dtype: bf, device: dev);
        var gs = (gu.narrow(1, 0, 14336) * 3).contiguous().view(3, 2, 14336);
        var us = gu.narrow(1, 14336, 14336).view(3, 2, 14336);
        Assert.True(FusedKernels.SiluMul(gs, us)!.equal(FusedKernels.SiluMul(gs.contiguous(), us.contiguous())!).all().item<bool>(), "SiLU·up of strided rows");
        var xr = randn(35, 4096 + 72, dtype: bf, device: dev).narrow(1, 0, 4096).view(5, 7, 4096);
        var strided = FusedKernels.RmsNorm(xr, r, w, 1e-5f) ?? throw new Xunit.Sdk.XunitException("the norm refused strided rows");
        var dense = FusedKernels.RmsNorm(xr.contiguous(), r, w, 1e-5f)!.Value;
        Assert.True(strided.Sum.equal(dense.Sum).all().item<bool>() && strided.Normalized.equal(dense.Normalized).all().item<bool>(), "norm of strided rows");
    }

    [Fact]
    public void RowStrideFoldsLeadingDimensionsOrRefuses()
    {
        using var m = zeros(6, 50);
        Assert.Equal(50, FusedKernels.RowStride(m.narrow(1, 0, 32).view(2, 3, 32), 1));          // column slice as (B, T, C)
        Assert.Equal(50, FusedKernels.RowStride(m.narrow(1, 10, 32).view(2, 3, 4, 8), 2));       // (B, T, H, d), heads contiguous
        Assert.Equal(50, FusedKernels.RowStride(m, 1));
        Assert.Equal(300, FusedKernels.RowStride(m.view(1, 300), 1));
        Assert.Null(FusedKernels.RowStride(m.t(), 1));                                            // columns are not contiguous
        Assert.Null(FusedKernels.RowStride(m.narrow(1, 0, 32).view(2, 3, 4, 8).transpose(1, 2), 2));   // rows in two strides
        using var cube = zeros(4, 5, 6);
        Assert.Null(FusedKernels.RowStride(cube.narrow(1, 0, 3), 1));                             // (4, 3, 6) of a (4, 5, 6): two strides
        Assert.Equal(6, FusedKernels.RowStride(cube.narrow(0, 1, 2), 1));
    }
}

/// <summary><c>bench phases</c> (the per-phase breakdown) needs CUDA events and graphs: on the CPU it is a one-line error.</summary>
public class BenchPhasesCliTests
{
    [NoCudaFact]
    public void OnTheCpuBenchPhasesSaysItNeedsCuda()
    {
        var r = CliRunner.Run("bench", "phases", "--config", "small");
        CliRunner.AssertUserError(r, "bench phases", "--device cuda");
    }

    [Fact]
    public void AnAbsurdRunCountIsRefusedBeforeAnyWork()
    {
        var r = CliRunner.Run("bench", "phases", "--device", "cpu", "--runs", "0");
        CliRunner.AssertUserError(r, "--runs", "≥ 1");
    }
}
