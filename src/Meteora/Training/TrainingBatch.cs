using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>
/// A right-padded batch: ids (B, T), next-token labels (B, T) with -100 where the loss is off (padding, prompt,
/// last position), task index per row (B,), the gate mask (B, T) of positions that have a next token (where the
/// MeteoRA gate loss applies, prompt included), and the count of loss tokens. Right padding needs no attention mask:
/// causal attention never lets a real token see the padding after it.
/// </summary>
public sealed class TrainingBatch : IDisposable
{
    public const long IgnoreIndex = -100;

    public Tensor Ids { get; }
    public Tensor Labels { get; }
    public Tensor Tasks { get; }
    /// <summary>(B, T) task of every position: the row's task, or each packed part's (<see cref="EncodedExample.TokenTasks"/>).</summary>
    public Tensor TokenTasks { get; }
    /// <summary>(B, T) bool: real positions GateFrom…len-2 of each row (context before an example is not gated).</summary>
    public Tensor GateMask { get; }
    /// <summary>(B, T) float32 weights of the LM loss's positions, or null when every row weighs them all 1 (<see cref="EncodedExample.LossWeights"/>).</summary>
    public Tensor? LossWeights { get; }
    public int LossTokens { get; }
    public int Tokens { get; }

    private TrainingBatch(Tensor ids, Tensor labels, Tensor tasks, Tensor tokenTasks, Tensor gateMask, Tensor? lossWeights, int lossTokens, int tokens)
    {
        Ids = ids; Labels = labels; Tasks = tasks; TokenTasks = tokenTasks; GateMask = gateMask; LossWeights = lossWeights; LossTokens = lossTokens; Tokens = tokens;
    }

    /// <summary>
    /// The rows as (B, T) tensors, right-padded to the longest row. <paramref name="padRows"/> and
    /// <paramref name="padLength"/> pad further, to a fixed shape (a CUDA-graphed step): padded positions and rows
    /// count in no loss (labels ignored, not gated, weight 0), and causal attention keeps them out of the real
    /// positions, so the losses are those of the unpadded batch. <paramref name="weighted"/> makes the LM-loss weights
    /// even when every row weighs its positions 1 (a graphed step's batches all have the same tensors).
    /// </summary>
    public static TrainingBatch Collate(IReadOnlyList<EncodedExample> rows, int padId, Device device, int padRows = 0, int padLength = 0, bool weighted = false)
    {
        int B = Math.Max(rows.Count, padRows), T = Math.Max(rows.Max(r => r.Ids.Length), padLength);
        var ids = new long[B * T];
        var labels = new long[B * T];
        var gate = new bool[B * T];
        var tokenTasks = new long[B * T];
        weighted |= rows.Any(r => r.LossWeights is not null);
        var weights = weighted ? new float[B * T] : null;
        Array.Fill(ids, padId);
        Array.Fill(labels, IgnoreIndex);
        int lossTokens = 0, tokens = 0;
        for (int b = 0; b < rows.Count; b++)
        {
            var r = rows[b];
            tokens += r.Ids.Length;
            for (int t = 0; t < r.Ids.Length; t++)
            {
                ids[b * T + t] = r.Ids[t];
                gate[b * T + t] = t + 1 < r.Ids.Length && t >= r.GateFrom;
                tokenTasks[b * T + t] = r.TokenTasks?[t] ?? r.Task;
                if (r.LossMask[t]) { labels[b * T + t] = r.Ids[t + 1]; lossTokens++; }
                if (weights is not null) weights[b * T + t] = r.LossWeights?[t] ?? 1f;
            }
        }
        return new TrainingBatch(
            tensor(ids, [B, T], device: device).DetachFromDisposeScope(),
            tensor(labels, [B, T], device: device).DetachFromDisposeScope(),
            tensor(rows.Select(r => (long)r.Task).Concat(Enumerable.Repeat(0L, B - rows.Count)).ToArray(), [B], device: device).DetachFromDisposeScope(),
            tensor(tokenTasks, [B, T], device: device).DetachFromDisposeScope(),
            tensor(gate, [B, T], device: device).DetachFromDisposeScope(),
            weights is null ? null : tensor(weights, [B, T], device: device).DetachFromDisposeScope(),
            lossTokens, tokens);
    }

    /// <summary>Copies <paramref name="other"/>'s tensors into this batch's (same shapes, same weighting): a graphed step's fixed inputs.</summary>
    internal void CopyFrom(TrainingBatch other)
    {
        if (!Ids.shape.SequenceEqual(other.Ids.shape) || (LossWeights is null) != (other.LossWeights is null))
            throw new ArgumentException($"batch of shape ({string.Join(", ", other.Ids.shape)}) does not fit ({string.Join(", ", Ids.shape)})");
        using var noGrad = no_grad();
        Ids.copy_(other.Ids); Labels.copy_(other.Labels); Tasks.copy_(other.Tasks); TokenTasks.copy_(other.TokenTasks); GateMask.copy_(other.GateMask);
        LossWeights?.copy_(other.LossWeights!);
    }

    public void Dispose()
    {
        Ids.Dispose(); Labels.Dispose(); Tasks.Dispose(); TokenTasks.Dispose(); GateMask.Dispose(); LossWeights?.Dispose();
    }
}
