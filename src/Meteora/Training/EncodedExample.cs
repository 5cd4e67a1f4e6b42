namespace Meteora.Training;

/// <summary>
/// A tokenized training sequence: ids (BOS + prompt + response + EOS) and, per position t, whether the
/// prediction of ids[t+1] counts in the loss. <see cref="Task"/> is the task index (for gate training).
/// </summary>
public sealed record EncodedExample(int[] Ids, bool[] LossMask, int Task, bool Truncated)
{
    /// <summary>Number of positions that count in the loss.</summary>
    public int LossTokens => LossMask.Count(m => m);
}
