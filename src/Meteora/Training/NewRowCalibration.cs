using Meteora.Moe;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>
/// <c>add-adapter --calibrate</c>: after training, scales the new adapter's gate row of every projection by the
/// factor α (from a grid over [0, 2]) whose top-1 decisions on held-out tokens have the best <b>balanced</b> accuracy —
/// the mean over tasks of each task's share of right decisions, so the new task and every replayed old task count
/// equally however many tokens each has. Measured on the demo (docs/RESULTS.md) it is a trade, not a fix: the old
/// tasks kept their accuracy better for most held-out tasks (upper −0.155 → +0.013) but length's fell further and
/// three new tasks lost accuracy — decisions right one projection at a time are not answers right. The new row's logit is linear in the row, so α · row turns exactly into
/// α · logit; α &lt; 1 stops the new row from taking old tasks' tokens it wins by a small margin, α &gt; 1 lets it win
/// its own task's tokens it narrowly loses. Ties keep the factor closest to 1 (no change).
/// </summary>
internal static class NewRowCalibration
{
    /// <summary>The grid of factors tried: 0, 0.05, …, 2.</summary>
    public static readonly double[] Grid = Enumerable.Range(0, 41).Select(i => i * 0.05).ToArray();

    /// <summary>
    /// Fits and applies one factor per projection on <paramref name="heldOut"/> (rows labelled with their task);
    /// returns the factors by projection key, and the balanced accuracy before and after (over all projections).
    /// </summary>
    public static (Dictionary<string, double> Factors, double Before, double After) Apply(MeteoraModel m, IReadOnlyList<EncodedExample> heldOut,
        int newRow, int padId, Device device, int batchSize)
    {
        // Per projection: gated positions' logits (M, L) and their tasks (M,), on the CPU.
        var logits = new Dictionary<string, List<float[]>>();
        var tasks = new List<long>();
        using (no_grad())
        {
            m.Model.eval();
            foreach (var chunk in heldOut.Chunk(batchSize))
            {
                using var scope = NewDisposeScope();
                using var batch = TrainingBatch.Collate(chunk, padId, device);
                using var recorder = new RoutingRecorder { RecordLogits = true };
                MeteoraLoss.ForwardRecordingGates(m, batch.Ids, recorder);
                var mask = batch.GateMask;                                                              // (B, T)
                tasks.AddRange(batch.TokenTasks.masked_select(mask).cpu().data<long>().ToArray());
                foreach (var (key, l) in recorder.Logits)
                {
                    var rows = l.masked_select(mask.unsqueeze(-1)).view(-1, l.shape[^1]).to(ScalarType.Float32).cpu();   // (M, L)
                    if (!logits.TryGetValue(key, out var list)) logits[key] = list = [];
                    list.Add(rows.data<float>().ToArray());
                }
            }
        }
        var labels = tasks.Select(t => (int)t).ToArray();
        int L = newRow + 1;
        var factors = new Dictionary<string, double>();
        double before = 0, after = 0;
        foreach (var (key, parts) in logits)
        {
            var flat = parts.SelectMany(x => x).ToArray();                                                 // (M·L)
            double best = double.NegativeInfinity, bestAlpha = 1, atOne = Balanced(flat, labels, L, newRow, 1.0);
            foreach (double alpha in Grid.OrderBy(a => Math.Abs(a - 1)))                                  // ties: closest to 1
            {
                double acc = Balanced(flat, labels, L, newRow, alpha);
                if (acc > best + 1e-12) { best = acc; bestAlpha = alpha; }
            }
            factors[key] = bestAlpha;
            before += atOne; after += best;
        }
        using (no_grad())
            foreach (var p in m.Projections)
                if (factors.TryGetValue(p.Site.Key, out double alpha) && alpha != 1.0)
                    p.moe_gate.narrow(0, newRow, 1).mul_(alpha);
        m.SyncGates();
        return (factors, before / Math.Max(logits.Count, 1), after / Math.Max(logits.Count, 1));
    }

    /// <summary>
    /// Mean over the tasks present of the share of their positions whose top-1, with the new row's logit × α, is their
    /// task. (Weighing the new task half and the old ones the other half instead gave the new rows more tokens and
    /// the old tasks larger drops: docs/RESULTS.md.)
    /// </summary>
    internal static double Balanced(float[] logits, int[] labels, int adapters, int newRow, double alpha)
    {
        var right = new Dictionary<int, int>();
        var total = new Dictionary<int, int>();
        for (int i = 0; i < labels.Length; i++)
        {
            int argmax = 0;
            double top = double.NegativeInfinity;
            for (int a = 0; a < adapters; a++)
            {
                double v = logits[i * adapters + a] * (a == newRow ? alpha : 1.0);
                if (v > top) { top = v; argmax = a; }
            }
            total[labels[i]] = total.GetValueOrDefault(labels[i]) + 1;
            if (argmax == labels[i]) right[labels[i]] = right.GetValueOrDefault(labels[i]) + 1;
        }
        return total.Count == 0 ? 0 : total.Keys.Average(t => right.GetValueOrDefault(t) / (double)total[t]);
    }
}
