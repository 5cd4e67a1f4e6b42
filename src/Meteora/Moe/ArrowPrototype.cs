using static TorchSharp.torch;

namespace Meteora.Moe;

/// <summary>
/// Arrow's prototype of one LoRA adapter at one projection (Ostapenko et al. 2024): the top right-singular vector of
/// ΔW = s·B A, a unit vector in the projection's input space. Computed exactly, without forming ΔW: with B = Q R
/// (reduced QR, Q having orthonormal columns), ΔW = s·Q (R A), so ΔW and the small R A (r, in) share their right
/// singular vectors. A positive scale s changes neither the vector nor its sign, so it is not needed here.
/// </summary>
internal static class ArrowPrototype
{
    /// <summary>
    /// The prototype (in,) float32 on the CPU of the adapter with A (r, in) and B (out, r). A singular vector is
    /// defined up to sign (Arrow ranks by |⟨x, p⟩|); this one has its largest-magnitude entry positive, so the result
    /// is deterministic. An adapter with ΔW = 0 gets the zero vector (it scores 0 for every token).
    /// </summary>
    public static Tensor Compute(Tensor a, Tensor b)
    {
        if (a.dim() != 2 || b.dim() != 2 || b.shape[1] != a.shape[0])
            throw new MeteoraException($"Arrow prototype: A {Shape(a)} and B {Shape(b)} are not (r, in) and (out, r)");
        using var scope = NewDisposeScope();
        var a32 = a.detach().to(ScalarType.Float32, CPU);                                  // (r, in)
        var b32 = b.detach().to(ScalarType.Float32, CPU);                                  // (out, r)
        var (_, r) = linalg.qr(b32);                                                       // R (min(out, r), r)
        var (_, s, vh) = linalg.svd(r.matmul(a32), fullMatrices: false);                   // Vh (min(out, r), in)
        if (s.numel() == 0 || s[0].item<float>() == 0) return zeros(a.shape[1]).MoveToOuterDisposeScope();
        var p = vh[0];                                                                     // (in,)
        if (p[p.abs().argmax().item<long>()].item<float>() < 0) p = p.neg();
        return (p / p.norm()).contiguous().MoveToOuterDisposeScope();
    }

    private static string Shape(Tensor t) => $"({string.Join(", ", t.shape)})";
}
