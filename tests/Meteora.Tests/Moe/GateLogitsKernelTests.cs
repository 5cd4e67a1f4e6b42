using Meteora.Moe;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Tests.Moe;

/// <summary>
/// The float32 gate logits kernel (exact ranking at prefill sizes): it compiles for our GPUs, leaves the CPU and training
/// on ATen's float32 GEMM, and on CUDA gives the float32 gate's logits, independent of the batch they come in.
/// </summary>
public class GateLogitsKernelTests
{
    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    [NvrtcFact]
    public void TheKernelCompilesForHopperAndAmpere()
    {
        foreach (var cubin in CubinAssert.CompilesForHopperAndAmpere(GateLogitsKernel.Source, "meteora_gate_logits_bf16.cu", "meteora_gate_logits_bf16"))
            Assert.True(cubin.Length > 1000, $"{cubin.Length}-byte CUBIN");
    }

    [Fact]
    public void TheHostsTilingIsTheKernels()
    {
        // The launch sizes its grid and tickets from the class's constants and the kernel walks its own #defines: a
        // mismatch would leave tokens or gate rows uncomputed without an error.
        int Const(string name) => (int)typeof(GateLogitsKernel).GetField(name, System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!.GetRawConstantValue()!;
        int Define(string name) => int.Parse(System.Text.RegularExpressions.Regex.Match(GateLogitsKernel.Source, $@"#define {name} (\d+)").Groups[1].Value);
        Assert.Equal(Const("Warps"), Define("WARPS"));
        Assert.Equal(Const("TokensPerBlock"), Define("TPB"));
        Assert.Equal(Const("RowsPerBlock"), Define("LR"));
        Assert.Equal(Const("SliceInputs"), Define("SLICE"));
        Assert.Equal(0, Define("SLICE") % (Define("WARPS") * 16));                         // whole k-steps per warp
    }

    [Fact]
    public void OnTheCpuExactRankingKeepsTheFloat32Gemm()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var x = randn(5, 64).to(ScalarType.BFloat16);
        var gate = randn(3, 64);
        Assert.Null(GateLogitsKernel.TryLogits(x, gate));
        Assert.Equal("float32 copy and GEMM (CPU)", GateLogitsKernel.Describe(CPU));
        Assert.True(Same(ExactRanking.Logits(x, gate), nn.functional.linear(x.to(ScalarType.Float32), gate)));
    }

    [CudaFact]
    public void OnCudaItGivesTheFloat32GatesLogitsWhateverTheBatch()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        manual_seed(5);
        foreach (int inF in new[] { 4096, 14336, 1032, 24, 8 })       // several slices, a partial chunk, short slices
        foreach (int L in new[] { 28, 5, 40, 256 })
        foreach (int n in new[] { 2, 33, 512 })
        {
            var x = randn(n, inF + 8, ScalarType.BFloat16, CUDA).narrow(1, 0, inF);      // rows further apart than in
            var gate = randn(L, inF, ScalarType.Float32, CUDA) * 0.05;
            var logits = GateLogitsKernel.TryLogits(x, gate);
            Assert.NotNull(logits);
            var reference = x.to(ScalarType.Float64).matmul(gate.to(ScalarType.Float64).t());           // (n, L)
            var error = (logits!.to(ScalarType.Float64) - reference).abs();
            var bound = x.to(ScalarType.Float64).abs().matmul(gate.to(ScalarType.Float64).abs().t()) * (2 * (inF + 2) * Math.Pow(2, -24));   // the tensor cores' float32 additions truncate
            Assert.True(error.le(bound + 1e-30).all().item<bool>(), $"in {inF}, L {L}, n {n}: an error past twice float32's summation bound");
            // Twice in a row (the tickets are reset) and each token alone: the same bits.
            Assert.True(Same(GateLogitsKernel.TryLogits(x, gate)!, logits), $"in {inF}, L {L}, n {n}: a second launch differs");
            Assert.True(Same(GateLogitsKernel.TryLogits(x.narrow(0, n - 1, 1).contiguous(), gate)!, logits.narrow(0, n - 1, 1)), "a token alone differs");
        }
        // Not for training: a gate that wants its gradient stays on the differentiable GEMM.
        using var grad = enable_grad();
        var g = randn(4, 64, ScalarType.Float32, CUDA).requires_grad_();
        Assert.Null(GateLogitsKernel.TryLogits(randn(3, 64, ScalarType.BFloat16, CUDA), g));
    }
}
