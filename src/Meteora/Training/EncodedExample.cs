namespace Meteora.Training;

/// <summary>
/// A tokenized training sequence: ids (BOS + prompt + response + EOS) and, per position t, whether the
/// prediction of ids[t+1] counts in the loss. <see cref="Task"/> is the task index (for gate training).
/// </summary>
public sealed record EncodedExample(int[] Ids, bool[] LossMask, int Task, bool Truncated)
{
    /// <summary>First position whose gate decision counts in the gate loss (after any context put before the example).</summary>
    public int GateFrom { get; init; }
    /// <summary>
    /// Task of every position, for a sequence that holds several tasks' examples one after another
    /// (<see cref="SequenceEncoder.Pack"/>); null: every position is <see cref="Task"/>'s.
    /// </summary>
    public int[]? TokenTasks { get; init; }
    /// <summary>
    /// Weight of each position's term in the LM loss (the prediction of ids[t+1]; only where <see cref="LossMask"/> is
    /// set); null: 1 everywhere. Restated-list sequences weigh the copied problems below the answers
    /// (<see cref="TrainingOptions.RestateCopyWeight"/>).
    /// </summary>
    public float[]? LossWeights { get; init; }

    /// <summary>Number of positions that count in the loss.</summary>
    public int LossTokens => LossMask.Count(m => m);
}
