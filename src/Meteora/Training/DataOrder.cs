namespace Meteora.Training;

/// <summary>
/// The order in which examples are visited: epoch e is a permutation drawn from a generator seeded with
/// (seed, e), so the k-th micro-batch is known from k alone and resuming needs only the step count.
/// </summary>
public sealed class DataOrder
{
    private readonly int _count;
    private readonly int _seed;
    private readonly bool _shuffle;
    private int _cachedEpoch = -1;
    private int[] _cached = [];

    public DataOrder(int count, int seed, bool shuffle = true)
    {
        if (count <= 0) throw new MeteoraException("training data is empty");
        _count = count; _seed = seed; _shuffle = shuffle;
    }

    /// <summary>Example index at global position <paramref name="position"/> (epoch = position / count).</summary>
    public int At(long position)
    {
        int epoch = (int)(position / _count);
        if (epoch != _cachedEpoch)
        {
            _cached = Enumerable.Range(0, _count).ToArray();
            // A seeded System.Random is the same in every process (HashCode.Combine is not).
            if (_shuffle) new Random(unchecked(_seed * 1_000_003 + epoch * 7_919 + 17)).Shuffle(_cached);
            _cachedEpoch = epoch;
        }
        return _cached[position % _count];
    }

    /// <summary>Indices of micro-batch <paramref name="k"/> of size <paramref name="batchSize"/>.</summary>
    public int[] MicroBatch(long k, int batchSize) =>
        Enumerable.Range(0, batchSize).Select(i => At(k * batchSize + i)).ToArray();
}
