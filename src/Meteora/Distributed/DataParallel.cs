namespace Meteora.Distributed;

/// <summary>
/// World-size-independent data parallelism: a global step's batch is fixed by the run (its rows come from the
/// (seed, epoch) permutation exactly as on one device); rank r of W takes the r-th contiguous share. So any world
/// size that divides the global batch sees the same rows per step, and a run can resume on another world size.
/// </summary>
public static class DataParallel
{
    /// <summary>
    /// Rank <paramref name="rank"/>'s share of a global batch of <paramref name="globalBatch"/> rows: the first row and
    /// the count. The global batch must divide evenly (B = world × micro-batch × grad-accum).
    /// </summary>
    public static (int Start, int Count) Slice(int globalBatch, int rank, int worldSize)
    {
        if (worldSize < 1) throw new MeteoraException($"world size {worldSize} must be at least 1");
        if (rank < 0 || rank >= worldSize) throw new MeteoraException($"rank {rank} is not in 0…{worldSize - 1}");
        if (globalBatch < worldSize || globalBatch % worldSize != 0)
            throw new MeteoraException($"the global batch ({globalBatch} rows) must be a multiple of the world size ({worldSize})");
        int share = globalBatch / worldSize;
        return (rank * share, share);
    }

    /// <summary>Rank <paramref name="rank"/>'s rows of <paramref name="globalRows"/> (see <see cref="Slice"/>).</summary>
    public static int[] RowsOf(IReadOnlyList<int> globalRows, int rank, int worldSize)
    {
        var (start, count) = Slice(globalRows.Count, rank, worldSize);
        return globalRows.Skip(start).Take(count).ToArray();
    }
}
