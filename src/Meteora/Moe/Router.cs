using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Moe;

/// <summary>The MeteoRA router: picks k adapters per token from the gate logits and weights them.</summary>
internal static class Router
{
    /// <summary>
    /// logits (N, L) → indices (N, k) int64 in descending logit order and weights (N, k) float32. The training
    /// form needs float32 logits; the inference form ranks logits in their own dtype and weighs in float32.
    /// Inference form: top-k of raw logits, softmax(top-k / T) (1 when k = 1). Training form: softmax over
    /// all L of logits / T, top-k, renormalised — differentiable through the weights.
    /// </summary>
    public static (Tensor Indices, Tensor Weights) Route(Tensor logits, int k, double temperature, bool trainingForm)
    {
        using var scope = NewDisposeScope();
        Tensor indices, weights;
        if (trainingForm)
        {
            using var t = temperature.ToScalar();   // held for the op: an implicit Scalar can be freed mid-call (see RmsNorm)
            var probs = logits.div(t).softmax(-1);                              // (N, L)
            (weights, indices) = probs.topk(k, -1);                             // (N, k)
            weights = weights / weights.sum(-1, keepdim: true);
        }
        else
        {
            Tensor top;
            (top, indices) = logits.topk(k, -1);                                // (N, k)
            if (k == 1) weights = ones_like(top, ScalarType.Float32);
            else if (temperature == 1.0) weights = top.softmax(-1, ScalarType.Float32);   // computed in float32 either way
            else
            {
                using var t = temperature.ToScalar();
                weights = top.to(ScalarType.Float32).div(t).softmax(-1);
            }
        }
        return (indices.MoveToOuterDisposeScope(), weights.MoveToOuterDisposeScope());
    }
}
