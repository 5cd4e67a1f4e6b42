using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Moe;

/// <summary>
/// Gate logits of a bfloat16/float16 model that rank the adapters exactly as the float32 gate does on the same input.
/// <para>
/// The fused GEMM computes the logits ℓ̂ = x Ĝᵀ from the gate's low-precision copy Ĝ and rounds them to the model
/// dtype; near-ties then rank differently from the float32 gate that training and the float32 path use. Per logit
/// the error against the float32 gate's own logits ℓ* = fl₃₂(x Gᵀ) is bounded (u: the dtype's unit roundoff, 2⁻⁸ for
/// bfloat16; γ = n·2⁻²⁴ / (1 − n·2⁻²⁴) for float32 sums of n = in products; ‖·‖ the 2-norm):
/// </para>
/// <code>
///   |ℓ̂ⱼ − ℓ*ⱼ| ≤ (u + γ(2 + u)) Σᵢ|xᵢ||Gⱼᵢ| + u/(1−u) |ℓ̂ⱼ|  ≤  E = c·‖x‖·maxⱼ‖Gⱼ‖ + u/(1−u)·maxⱼ|ℓ̂ⱼ|
/// </code>
/// <para>
/// (the rounding of Ĝ, the float32 sums of both GEMMs, the output rounding; Cauchy–Schwarz for the sum).
/// <c>c</c> doubles <c>u</c> for GEMMs that reduce split-K partial sums in the model dtype (cuBLAS may).
/// If the k-th largest ℓ̂ exceeds the (k+1)-th by more than 2E, the top-k set is the float32 gate's; otherwise that
/// row's logits are recomputed with the float32 gate. The routing kernel applies the same test to the same bound,
/// so the ATen path and the kernel pick the same adapters. Rows well apart keep their low-precision logits (and the
/// softmax weights they give), so the fast path's numbers do not change where the ranking was already right.
/// </para>
/// <para>
/// Limits: "the float32 gate's" top-k is itself a float32 computation, and the kernel sums its dot products in another
/// order than the float32 GEMM here, so two adapters whose float32 logits tie to within float32 rounding may still
/// rank either way. The bound assumes the fused GEMM reduces in float32 with at most one low-precision rounding of
/// partial sums; cuBLAS's reduced-precision split-K could round more often — <c>bench/device-fidelity.sh</c> measures
/// it on the GPU.
/// </para>
/// </summary>
internal static class ExactRanking
{
    /// <summary>
    /// Whether low-precision models rank near-ties with the float32 gate (default true). <c>METEORA_EXACT_RANKING=off</c>
    /// or setting this false ranks every token on the fused GEMM's logits alone (the kernel gets a bound that never
    /// triggers): for measuring what exact ranking costs and changes (<c>bench routing</c>, <c>bench model</c>).
    /// </summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("METEORA_EXACT_RANKING") is not ("off" or "0" or "false");

    /// <summary>
    /// Coefficients for which the test does not trigger (the bound is negative where a gap never is; only an all-zero
    /// row, whose every ranking is the same, still counts as near).
    /// </summary>
    public static readonly (double X, double Abs) Never = (-1, -1);

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
    /// Float32 logits (N, L) whose top-k is the float32 gate's: <paramref name="low"/> (the fused GEMM's, model dtype)
    /// where the k-th and (k+1)-th are more than 2E apart, the float32 gate's elsewhere. <paramref name="pastTopK"/>
    /// (N, L) or (1, L) marks the sorted positions past each token's k (true from position k on).
    /// Device ops only (no host sync), so a CUDA graph can capture them.
    /// </summary>
    public static Tensor Logits(Tensor low, Tensor x2, Tensor gate, (double X, double Abs) coefficients, Tensor pastTopK) =>
        Logits(low, x2, gate, coefficients, pastTopK, out _);

    /// <inheritdoc cref="Logits(Tensor, Tensor, Tensor, ValueTuple{double, double}, Tensor)"/>
    /// <param name="near">(N,) bool: the tokens ranked with the float32 gate</param>
    public static Tensor Logits(Tensor low, Tensor x2, Tensor gate, (double X, double Abs) coefficients, Tensor pastTopK, out Tensor near)
    {
        using var scope = NewDisposeScope();
        // Scalars held for the ops (an implicit one can be freed mid-op: Runtime.HeldScalars).
        using Scalar posInf = double.PositiveInfinity, cx = coefficients.X, cabs = coefficients.Abs, two = 2.0, minusOne = -1.0;
        var v = low.to(ScalarType.Float32);                                                  // (N, L)
        var sorted = v.sort(-1, descending: true).Values;                                   // (N, L)
        var lastIn = sorted.masked_fill(pastTopK, posInf).amin(-1);                         // (N,) the k-th largest
        var firstOut = sorted.masked_fill(pastTopK.logical_not(), HeldScalars.NegativeInfinity).amax(-1);   // (N,) the (k+1)-th, −∞ when k = L
        var xf = x2.to(ScalarType.Float32);                                                 // (N, in)
        var norm = xf.square().sum(-1).sqrt_();                                             // (N,) ‖x‖
        var bound = norm.mul_(cx).add_(v.abs().amax(-1).mul_(cabs), HeldScalars.One);      // (N,) E
        var close = lastIn.add(firstOut, minusOne).le(bound.mul_(two));                     // (N,) bool: gap ≤ 2E
        var exact = nn.functional.linear(xf, gate);                                         // (N, L) the float32 gate's
        near = close.MoveToOuterDisposeScope();
        return where(close.unsqueeze(1), exact, v).MoveToOuterDisposeScope();
    }
}
