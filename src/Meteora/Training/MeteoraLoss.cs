using Meteora.Moe;
using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>
/// The three numbers of a MeteoRA loss (total = lm + λ · gate) and the gate accuracy's two counts, all device tensors
/// (nothing is read back to the host, so a training step can be captured in a CUDA graph).
/// </summary>
/// <param name="Correct">(scalar, float64) (projection, position) pairs whose top-1 gate logit is the row's task</param>
/// <param name="Decisions">
/// (scalar, float64) what <paramref name="Correct"/> is a share of: the batch's own (projection, position) pairs, or
/// the step's when given its counts (this batch's part of the step's share, which the step's batches sum to)
/// </param>
public sealed record MeteoraLossValue(Tensor Total, Tensor Lm, Tensor Gate, Tensor Correct, Tensor Decisions)
{
    /// <summary>Correct over decisions: one read back from the device.</summary>
    public double GateAccuracy() => Correct.item<double>() / Math.Max(Decisions.item<double>(), 1);
}

/// <summary>
/// The MeteoRA training objective (DESIGN.md): LM cross-entropy + λ · gate cross-entropy, with the router in its
/// training form. The gate loss is one mean over every (projection, position) pair of the float32 gate logits
/// against the row's task index, over the positions that have a next token (padding excluded). Given a training
/// step's <see cref="LossCounts"/>, both terms are this batch's sums over the step's counts instead of its own means.
/// </summary>
public static class MeteoraLoss
{
    /// <summary>
    /// The model's forward pass (B, T) → (B, T, V) with the router in its training form, every gated projection's
    /// float32 gate logits (B, T, L) going to <paramref name="recorder"/> (which owns them).
    /// </summary>
    internal static Tensor ForwardRecordingGates(MeteoraModel m, Tensor ids, RoutingRecorder recorder)
    {
        bool trainingForm = m.Routing.TrainingForm;
        m.Routing.TrainingForm = true;
        m.Attach(recorder);
        try { return m.Model.forward(ids); }
        finally { m.Attach(null); m.Routing.TrainingForm = trainingForm; }
    }

    /// <summary>The loss of <paramref name="m"/> on <paramref name="batch"/> (rows labelled with their task), gate term weighted by <paramref name="gateLossWeight"/>.</summary>
    /// <param name="normalizers">the step's counts (null: the batch's own, so the terms are means)</param>
    public static MeteoraLossValue Compute(MeteoraModel m, TrainingBatch batch, double gateLossWeight, LossCounts? normalizers = null)
    {
        using var scope = NewDisposeScope();
        using var recorder = new RoutingRecorder { RecordLogits = true };
        var logits = ForwardRecordingGates(m, batch.Ids, recorder);                     // (B, T, V)

        var lm = LanguageModelLoss.CrossEntropy(logits, batch.Labels, batch.LossWeights, normalizers?.LmWeight);
        // Every projection's logits at once, with the mask as weights instead of selecting the gated positions: the
        // same sums, no shape that depends on the data (masked_select would wait for the device 224 times a step).
        int projections = recorder.Logits.Count;
        // Gated positions with a task index (none is negative today; such a position would count in no term).
        var gated = batch.GateMask.logical_and(batch.TokenTasks.ge(HeldScalars.Zero));       // (B, T)
        var targets = batch.TokenTasks.clamp_min(0);                                      // (B, T); ungated positions are masked out
        Tensor sum, correct;
        if (projections == 0)
        {
            sum = zeros([], ScalarType.Float32, logits.device);
            correct = zeros([], ScalarType.Float64, logits.device);
        }
        else
        {
            var gateLogits = stack(recorder.Logits.Select(x => x.Logits).ToList());      // (P, B, T, L) float32
            var picked = gateLogits.log_softmax(-1)
                .gather(-1, targets.unsqueeze(-1).unsqueeze(0).expand(projections, -1, -1, 1)).squeeze(-1);   // (P, B, T) log p(task)
            // masked_fill, not a product with the mask: a non-finite logit at an ungated position must not reach the sum.
            sum = picked.masked_fill(gated.logical_not().unsqueeze(0), HeldScalars.Zero).sum().neg();   // Σ cross-entropy over gated pairs
            using (no_grad()) correct = gateLogits.argmax(-1).eq(targets).logical_and(gated.unsqueeze(0)).sum(ScalarType.Float64);
        }
        // (projection, position) pairs the sums are divided by: this batch's, or the step's over all its batches. Counts in
        // float64 (exact far beyond float32's 2²⁴); the loss divides by them in float32.
        using var p = ((double)projections).ToScalar();
        var decisions = normalizers is { } c ? full([], c.GatedPositions * projections, ScalarType.Float64, logits.device)
            : gated.sum(ScalarType.Float64).mul(p);
        // Scalars held for the ops' duration (an implicit one can be finalized while the op runs; see RmsNorm).
        using var one = 1.0.ToScalar();
        using var w = gateLossWeight.ToScalar();
        var gate = sum.div(decisions.clamp_min(one).to(ScalarType.Float32));
        var total = lm + gate.mul(w);
        return new MeteoraLossValue(total.MoveToOuterDisposeScope(), lm.MoveToOuterDisposeScope(), gate.MoveToOuterDisposeScope(),
            correct.MoveToOuterDisposeScope(), decisions.MoveToOuterDisposeScope());
    }
}
