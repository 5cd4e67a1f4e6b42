namespace Meteora.Training;

/// <summary>
/// The order in which examples are visited. Epoch e is drawn from a generator seeded with (seed, e), so the k-th
/// micro-batch is known from k alone and resuming needs only the step count. With <c>balance</c>, each epoch
/// takes every group (task) equally often: smaller groups are cycled up to the size of the largest. With length
/// buckets, each shuffled epoch is cut into micro-batches whose examples share a bucket (sequences of similar
/// length), and those batches are shuffled: a batch is padded to its longest sequence, so mixing 40-token examples
/// with 300-token ones would make every row of most batches cost 300. The buckets' leftovers (fewer than a
/// batch) end the epoch together.
/// </summary>
internal sealed class DataOrder
{
    private readonly int[][] _groups;
    private readonly int _seed;
    private readonly bool _balance;
    private readonly IReadOnlyList<int>? _bucketOf;
    private readonly int _batchSize;
    private int _cachedEpoch = -1;
    private int[] _cached = [];

    /// <summary>Orders examples whose group (task) is <paramref name="groupOf"/>[i].</summary>
    /// <param name="bucketOf">length bucket of every example (<see cref="LengthBucket"/>), or null for none</param>
    /// <param name="batchSize">micro-batch size the buckets are cut into (with <paramref name="bucketOf"/>)</param>
    public DataOrder(IReadOnlyList<int> groupOf, int seed, bool balance = false, IReadOnlyList<int>? bucketOf = null, int batchSize = 1)
    {
        if (bucketOf is not null && bucketOf.Count != groupOf.Count) throw new ArgumentException("one length bucket per example", nameof(bucketOf));
        _bucketOf = bucketOf is not null && batchSize > 1 && bucketOf.Distinct().Skip(1).Any() ? bucketOf : null;
        _batchSize = batchSize;
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
            if (_bucketOf is not null) _cached = Bucketed(_cached, rng);
            _cachedEpoch = epoch;
        }
        return _cached[position % EpochLength];
    }

    /// <summary>Length bucket of a sequence of <paramref name="tokens"/> tokens: ⌈log₂⌉, so a bucket's longest is under twice its shortest.</summary>
    public static int LengthBucket(int tokens) => tokens <= 1 ? 0 : 32 - System.Numerics.BitOperations.LeadingZeroCount((uint)(tokens - 1));

    private int[] Bucketed(int[] shuffled, Random rng)
    {
        var full = new List<int[]>();
        var leftovers = new List<int>();
        foreach (var bucket in shuffled.GroupBy(i => _bucketOf![i]))                     // keeps the shuffled order inside each
            foreach (var batch in bucket.Chunk(_batchSize))
                if (batch.Length == _batchSize) full.Add(batch); else leftovers.AddRange(batch);
        var batches = full.ToArray();
        rng.Shuffle(batches);
        return batches.SelectMany(b => b).Concat(leftovers).ToArray();
    }

    /// <summary>Example indices at positions <paramref name="start"/> … <paramref name="start"/> + <paramref name="count"/> − 1.</summary>
    public int[] Positions(long start, int count) => Enumerable.Range(0, count).Select(i => At(start + i)).ToArray();

    /// <summary>Indices of micro-batch <paramref name="k"/> of size <paramref name="batchSize"/>.</summary>
    public int[] MicroBatch(long k, int batchSize) => Positions(k * batchSize, batchSize);
}
