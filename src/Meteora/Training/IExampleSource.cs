namespace Meteora.Training;

/// <summary>
/// Training examples made on demand (generated pretraining documents) rather than held in memory: the loop asks
/// for each example's task without building it, and identifies the data by the generator's settings instead of
/// hashing every sequence.
/// </summary>
public interface IExampleSource : IReadOnlyList<EncodedExample>
{
    /// <summary>Task (group) index of every example, in order.</summary>
    IReadOnlyList<int> Tasks { get; }

    /// <summary>A string that is equal for two sources exactly when they produce the same examples.</summary>
    string Fingerprint { get; }
}
