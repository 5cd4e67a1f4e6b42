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

    public static TrainingBatch Collate(IReadOnlyList<EncodedExample> rows, int padId, Device device)
    {
        int B = rows.Count, T = rows.Max(r => r.Ids.Length);
        var ids = new long[B * T];
        var labels = new long[B * T];
        var gate = new bool[B * T];
        var tokenTasks = new long[B * T];
        bool weighted = rows.Any(r => r.LossWeights is not null);
        var weights = weighted ? new float[B * T] : null;
        Array.Fill(ids, padId);
        Array.Fill(labels, IgnoreIndex);
        int lossTokens = 0, tokens = 0;
        for (int b = 0; b < B; b++)
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
            tensor(rows.Select(r => (long)r.Task).ToArray(), [B], device: device).DetachFromDisposeScope(),
            tensor(tokenTasks, [B, T], device: device).DetachFromDisposeScope(),
            tensor(gate, [B, T], device: device).DetachFromDisposeScope(),
            weights is null ? null : tensor(weights, [B, T], device: device).DetachFromDisposeScope(),
            lossTokens, tokens);
    }

    public void Dispose()
    {
        Ids.Dispose(); Labels.Dispose(); Tasks.Dispose(); TokenTasks.Dispose(); GateMask.Dispose(); LossWeights?.Dispose();
    }
}
