namespace Meteora.Training;

/// <summary>
/// The order in which examples are visited. Epoch e is drawn from a generator seeded with (seed, e), so the k-th
/// micro-batch is known from k alone and resuming needs only the step count. With <c>balance</c>, each epoch
/// takes every group (task) equally often: smaller groups are cycled up to the size of the largest.
/// </summary>
public sealed class DataOrder
{
    private readonly int[][] _groups;
    private readonly int _seed;
    private readonly bool _balance;
    private int _cachedEpoch = -1;
    private int[] _cached = [];

    /// <summary>Orders examples whose group (task) is <paramref name="groupOf"/>[i].</summary>
    public DataOrder(IReadOnlyList<int> groupOf, int seed, bool balance = false)
    {
        if (groupOf.Count == 0) throw new MeteoraException("training data is empty");
        _groups = Enumerable.Range(0, groupOf.Count).GroupBy(i => groupOf[i]).OrderBy(g => g.Key).Select(g => g.ToArray()).ToArray();
        _seed = seed;
        _balance = balance && _groups.Length > 1;
        EpochLength = _balance ? _groups.Length * _groups.Max(g => g.Length) : groupOf.Count;
    }

    /// <summary>Examples per epoch (with balance: groups × largest group).</summary>
    public int EpochLength { get; }

    /// <summary>Example index at global position <paramref name="position"/>.</summary>
    public int At(long position)
    {
        int epoch = (int)(position / EpochLength);
        if (epoch != _cachedEpoch)
        {
            // A seeded System.Random is the same in every process (HashCode.Combine is not).
            var rng = new Random(unchecked(_seed * 1_000_003 + epoch * 7_919 + 17));
            if (_balance)
            {
                int size = _groups.Max(g => g.Length);
                _cached = _groups.SelectMany(g =>
                {
                    var perm = (int[])g.Clone();
                    rng.Shuffle(perm);
                    return Enumerable.Range(0, size).Select(i => perm[i % perm.Length]);
                }).ToArray();
            }
            else
            {
                _cached = _groups.SelectMany(g => g).Order().ToArray();
            }
            rng.Shuffle(_cached);
            _cachedEpoch = epoch;
        }
        return _cached[position % EpochLength];
    }

    /// <summary>Indices of micro-batch <paramref name="k"/> of size <paramref name="batchSize"/>.</summary>
    public int[] MicroBatch(long k, int batchSize) =>
        Enumerable.Range(0, batchSize).Select(i => At(k * batchSize + i)).ToArray();
}
