using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>
/// Next-token cross-entropy in float32, mean over the positions whose label is not -100 — or, with per-position
/// weights, the weighted mean Σ w·ce / Σ w over those positions.
/// </summary>
internal static class LanguageModelLoss
{
    // Held for the process: an implicit Scalar can be finalized while its op runs (see HeldScalars).
    private static readonly Scalar Ignored = TrainingBatch.IgnoreIndex.ToScalar(), Zero = 0.ToScalar(), Tiny = 1e-12.ToScalar();

    /// <summary>logits (B, T, V), labels (B, T), optional weights (B, T) float32 → scalar.</summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor labels, Tensor? weights = null)
    {
        long V = logits.shape[^1];
        var flat = logits.reshape(-1, V).to(ScalarType.Float32);                          // (B·T, V)
        if (weights is null) return nn.functional.cross_entropy(flat, labels.reshape(-1), ignore_index: TrainingBatch.IgnoreIndex);
        using var scope = NewDisposeScope();
        var ce = nn.functional.cross_entropy(flat, labels.reshape(-1), ignore_index: TrainingBatch.IgnoreIndex,
            reduction: nn.Reduction.None);                                                 // (B·T,), 0 where ignored
        var w = weights.reshape(-1).masked_fill(labels.reshape(-1).eq(Ignored), Zero);        // (B·T,), 0 where ignored
        return (ce * w).sum().div(w.sum().clamp_min(Tiny)).MoveToOuterDisposeScope();
    }
}
