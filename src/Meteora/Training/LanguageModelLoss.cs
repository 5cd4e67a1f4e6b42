using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>
/// Next-token cross-entropy in float32 over the positions whose label is not -100: Σ w·ce / denominator, with
/// per-position weights w (1 when none). With the batch's own Σ w as the denominator (the default) it is the
/// (weighted) mean; a training step passes the whole step's Σ w instead (<see cref="LossCounts"/>).
/// </summary>
internal static class LanguageModelLoss
{
    // Held for the process: an implicit Scalar can be finalized while its op runs (see HeldScalars).
    private static readonly Scalar Ignored = TrainingBatch.IgnoreIndex.ToScalar(), Zero = 0.ToScalar(), Tiny = 1e-12.ToScalar();

    /// <summary>logits (B, T, V), labels (B, T), optional weights (B, T) float32 → scalar.</summary>
    /// <param name="denominator">what the sum is divided by; null: Σ w over the counted positions (a mean)</param>
    public static Tensor CrossEntropy(Tensor logits, Tensor labels, Tensor? weights = null, double? denominator = null)
    {
        long V = logits.shape[^1];
        var flat = logits.reshape(-1, V).to(ScalarType.Float32);                          // (B·T, V)
        if (weights is null && denominator is null)
            return nn.functional.cross_entropy(flat, labels.reshape(-1), ignore_index: TrainingBatch.IgnoreIndex);
        using var scope = NewDisposeScope();
        var ce = nn.functional.cross_entropy(flat, labels.reshape(-1), ignore_index: TrainingBatch.IgnoreIndex,
            reduction: nn.Reduction.None);                                                 // (B·T,), 0 where ignored
        var counted = labels.reshape(-1).ne(Ignored);                                       // (B·T,)
        var w = weights is null ? counted.to(ScalarType.Float32)
            : weights.reshape(-1).masked_fill(counted.logical_not(), Zero);                 // (B·T,), 0 where ignored
        var sum = (ce * w).sum();
        if (denominator is null) return sum.div(w.sum().clamp_min(Tiny)).MoveToOuterDisposeScope();
        using var d = Math.Max(denominator.Value, 1e-12).ToScalar();
        return sum.div(d).MoveToOuterDisposeScope();
    }
}
