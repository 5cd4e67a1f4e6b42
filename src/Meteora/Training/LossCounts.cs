namespace Meteora.Training;

/// <summary>
/// The denominators of a loss, known before the forward pass: the LM loss's total position weight (Σ w over the
/// positions that count; their number when unweighted) and the number of gated positions (where the MeteoRA gate
/// loss applies). A training step normalises every micro-batch's loss sums by the counts of the whole step — over
/// all micro-batches and, in data-parallel training, all ranks — so its gradient is that of one mean over the
/// step's global batch, whatever the micro-batching or the world size.
/// </summary>
public readonly record struct LossCounts(double LmWeight, double GatedPositions)
{
    /// <summary>The counts of <paramref name="rows"/> (what <see cref="TrainingBatch.Collate"/> would put in the loss).</summary>
    public static LossCounts Of(IEnumerable<EncodedExample> rows)
    {
        double lm = 0, gated = 0;
        foreach (var r in rows)
        {
            for (int t = 0; t < r.LossMask.Length; t++)
                if (r.LossMask[t]) lm += r.LossWeights?[t] ?? 1f;
            gated += Math.Max(0, r.Ids.Length - 1 - r.GateFrom);   // positions GateFrom … len−2
        }
        return new LossCounts(lm, gated);
    }

    public static LossCounts operator +(LossCounts a, LossCounts b) => new(a.LmWeight + b.LmWeight, a.GatedPositions + b.GatedPositions);
}
