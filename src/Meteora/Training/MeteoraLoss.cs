using Meteora.Moe;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>
/// The three numbers of a MeteoRA loss (total = lm + λ · gate) and the gate accuracy: the share of (projection,
/// position) pairs whose top-1 gate logit is the row's task.
/// </summary>
/// <param name="GateAccuracy">
/// correct top-1 decisions over the normaliser's decisions: the batch's own (a share), or the step's (this batch's
/// part of the step's share, which the step's batches sum to)
/// </param>
/// <param name="Decisions">the batch's (projection, position) pairs</param>
public sealed record MeteoraLossValue(Tensor Total, Tensor Lm, Tensor Gate, double GateAccuracy, long Decisions);

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
        var mask = batch.GateMask;                                                       // (B, T)
        var targets = batch.TokenTasks.masked_select(mask);                               // (M,) task per gated position
        Tensor sum = zeros(1, ScalarType.Float32, logits.device);
        Tensor correct = zeros(1, ScalarType.Int64, logits.device);
        long count = 0, projections = 0;
        foreach (var (_, gateLogits) in recorder.Logits)                                  // (B, T, L) each
        {
            var rows = gateLogits.masked_select(mask.unsqueeze(-1)).view(-1, gateLogits.shape[^1]);   // (M, L)
            sum = sum + nn.functional.cross_entropy(rows, targets, reduction: nn.Reduction.Sum);
            using (no_grad()) correct = correct + (rows.argmax(-1) == targets).sum();
            count += rows.shape[0];
            projections++;
        }
        // (projection, position) pairs the sums are divided by: this batch's, or the step's over all its batches.
        double decisions = Math.Max(normalizers is { } c ? c.GatedPositions * projections : count, 1);
        // Scalars held for the ops' duration (an implicit one can be finalized while the op runs; see RmsNorm).
        using var n = decisions.ToScalar();
        using var w = gateLossWeight.ToScalar();
        var gate = sum.div(n).squeeze();
        var total = lm + gate.mul(w);
        double accuracy = correct.item<long>() / decisions;
        return new MeteoraLossValue(total.MoveToOuterDisposeScope(), lm.MoveToOuterDisposeScope(), gate.MoveToOuterDisposeScope(), accuracy, count);
    }
}
