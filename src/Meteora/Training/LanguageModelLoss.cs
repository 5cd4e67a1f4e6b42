using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>Next-token cross-entropy in float32, mean over the positions whose label is not -100.</summary>
public static class LanguageModelLoss
{
    /// <summary>logits (B, T, V), labels (B, T) → scalar.</summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor labels)
    {
        long V = logits.shape[^1];
        return nn.functional.cross_entropy(logits.reshape(-1, V).to(ScalarType.Float32), labels.reshape(-1),
            ignore_index: TrainingBatch.IgnoreIndex);
    }
}
