using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Moe;

/// <summary>
/// Gate logits of a bfloat16/float16 model that rank (and weigh) the adapters exactly as the float32 gate does on the
/// same input: one float32 GEMM <c>fl₃₂(x Gᵀ)</c> (N, L) of the layer's actual input with the float32 gate, beside the
/// fused GEMM, for every token.
/// <para>
/// Why not trust the fused GEMM's own logits ℓ̂ = x Ĝᵀ (the gate's low-precision copy, rounded to the model dtype)?
/// Near-ties then rank differently from the float32 gate that training and the float32 path use. Why not re-rank only
/// the tokens near a tie? That was the first design (2026-12-02): per logit the error is bounded
/// </para>
/// <code>
///   |ℓ̂ⱼ − ℓ*ⱼ| ≤ (u + γ(2 + u)) Σᵢ|xᵢ||Gⱼᵢ| + u/(1−u) |ℓ̂ⱼ|  ≤  E = c·‖x‖·maxⱼ‖Gⱼ‖ + u/(1−u)·maxⱼ|ℓ̂ⱼ|
/// </code>
/// <para>
/// (u: the dtype's unit roundoff; γ = n·2⁻²⁴ / (1 − n·2⁻²⁴) for float32 sums of n = in products; the rounding of Ĝ,
/// the float32 sums of both GEMMs, the output rounding, Cauchy–Schwarz), and only rows whose k-th and (k+1)-th ℓ̂ were
/// within 2E were ranked again. On an H200 that cost far more than the GEMM it saved: the worst-case bound flags most
/// tokens of a real-sized layer (Cauchy–Schwarz over 4 096 inputs), the routing kernel recomputed a flagged row's L dot
/// products in one warp (latency-bound: decode of an 8B-shaped model went from 12.8 to 143 ms per step), and without a
/// host sync the ATen path had to run the float32 GEMM for every row anyway. So every token is ranked from the float32
/// GEMM; the bound stays as a diagnostic (<see cref="NearTies"/>: how many decisions the low-precision logits alone
/// could not be trusted on) for <c>meteora bench routing</c>. docs/BENCHMARKS.md "bfloat16 routing fidelity" has the
/// measurements.
/// </para>
/// <para>
/// Limit: "the float32 gate's" top-k is itself a float32 computation; two adapters whose float32 logits tie to within
/// float32 rounding may rank either way between GEMM implementations (CPU vs cuBLAS).
/// </para>
/// </summary>
internal static class ExactRanking
{
    /// <summary>
    /// Whether low-precision models rank with the float32 gate (default true). <c>METEORA_EXACT_RANKING=off</c> or
    /// setting this false ranks every token on the fused GEMM's low-precision logits alone (one GEMM fewer per
    /// projection): for measuring what exact ranking costs and changes (<c>bench routing</c>, <c>bench model</c>).
    /// </summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("METEORA_EXACT_RANKING") is not ("off" or "0" or "false");

    /// <summary>Unit roundoff of the model dtype (half an ulp of 1).</summary>
    public static double UnitRoundoff(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => Math.Pow(2, -8),
        ScalarType.Float16 => Math.Pow(2, -11),
        _ => throw new ArgumentException($"exact ranking is for bfloat16 and float16 models, not {dtype}"),
    };

    /// <summary>
    /// The bound's coefficients: E = <c>X</c>·‖x‖ + <c>Abs</c>·maxⱼ|ℓ̂ⱼ| for a gate whose largest row norm is
    /// <paramref name="gateNormMax"/> and rows of <paramref name="inFeatures"/> inputs.
    /// </summary>
    public static (double X, double Abs) Coefficients(ScalarType dtype, int inFeatures, double gateNormMax)
    {
        double u = UnitRoundoff(dtype);
        double nu = inFeatures * Math.Pow(2, -24);
        double gamma = nu / (1 - nu);
        double c = 2 * u + gamma * (2 + u);   // 2u: the copy's rounding and a low-precision split-K reduction
        return (c * gateNormMax, u / (1 - u));
    }

    /// <summary>
    /// The float32 gate's logits (N, L) float32, contiguous, of <paramref name="x2"/> (N, in) in the model dtype:
    /// what every low-precision model ranks and weighs from while <see cref="Enabled"/>. On CUDA in bfloat16 one
    /// kernel (<see cref="GateLogitsKernel"/>); elsewhere, or where it does not apply, x widened to float32 and a GEMM.
    /// </summary>
    public static Tensor Logits(Tensor x2, Tensor gate) =>
        GateLogitsKernel.TryLogits(x2, gate) ?? nn.functional.linear(x2.to(ScalarType.Float32), gate);

    /// <summary>
    /// (N,) bool, a diagnostic: the tokens whose k-th and (k+1)-th low-precision logits <paramref name="low"/> (N, L)
    /// are within 2E of each other, so that the low-precision ranking alone might differ from the float32 gate's.
    /// <paramref name="pastTopK"/> (N, L) or (1, L) marks the sorted positions past each token's k (true from k on).
    /// </summary>
    public static Tensor NearTies(Tensor low, Tensor x2, (double X, double Abs) coefficients, Tensor pastTopK)
    {
        using var scope = NewDisposeScope();
        // Scalars held for the ops (an implicit one can be freed mid-op: Runtime.HeldScalars).
        using Scalar posInf = double.PositiveInfinity, cx = coefficients.X, cabs = coefficients.Abs, two = 2.0, minusOne = -1.0;
        var v = low.to(ScalarType.Float32);                                                  // (N, L)
        var sorted = v.sort(-1, descending: true).Values;                                   // (N, L)
        var lastIn = sorted.masked_fill(pastTopK, posInf).amin(-1);                         // (N,) the k-th largest
        var firstOut = sorted.masked_fill(pastTopK.logical_not(), HeldScalars.NegativeInfinity).amax(-1);   // (N,) the (k+1)-th, −∞ when k = L
        var norm = x2.to(ScalarType.Float32).square().sum(-1).sqrt_();                      // (N,) ‖x‖
        var bound = norm.mul_(cx).add_(v.abs().amax(-1).mul_(cabs), HeldScalars.One);      // (N,) E
        return lastIn.add(firstOut, minusOne).le(bound.mul_(two)).MoveToOuterDisposeScope();   // (N,) gap ≤ 2E
    }
}
