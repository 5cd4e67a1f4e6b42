using static TorchSharp.torch;

namespace Meteora.Distributed;

/// <summary>
/// A group of ranks that are threads of one process, for tests of data-parallel code on the CPU: each rank gets a
/// <see cref="Communicator"/> and runs on its own thread. Sums are taken in rank order on every rank, so they are
/// bitwise the same everywhere and the same for any thread timing. A rank that waits longer than
/// <see cref="Timeout"/> for the others (one of them failed or called a different collective) throws instead of
/// hanging.
/// </summary>
public sealed class InProcessGroup : IDisposable
{
    private readonly Barrier _barrier;
    private readonly Tensor?[] _slots;

    public InProcessGroup(int worldSize, TimeSpan? timeout = null)
    {
        if (worldSize < 1) throw new MeteoraException($"world size {worldSize} must be at least 1");
        WorldSize = worldSize;
        Timeout = timeout ?? TimeSpan.FromSeconds(60);
        _barrier = new Barrier(worldSize);
        _slots = new Tensor?[worldSize];
    }

    public int WorldSize { get; }

    /// <summary>How long a rank waits at a collective for the others before it throws.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>Rank <paramref name="rank"/>'s communicator (use each from one thread).</summary>
    public ICommunicator Communicator(int rank)
    {
        if (rank < 0 || rank >= WorldSize) throw new MeteoraException($"rank {rank} is not in 0…{WorldSize - 1}");
        return new RankCommunicator(this, rank);
    }

    public void Dispose() => _barrier.Dispose();

    private void Wait(int rank, string what)
    {
        if (!_barrier.SignalAndWait(Timeout))
            throw new TimeoutException($"rank {rank}: the other ranks did not reach {what} within {Timeout.TotalSeconds:0} s");
    }

    private sealed class RankCommunicator(InProcessGroup group, int rank) : ICommunicator
    {
        public int Rank => rank;
        public int WorldSize => group.WorldSize;

        public void AllReduceSum(Tensor tensor)
        {
            group._slots[rank] = tensor;
            group.Wait(rank, "all-reduce");                                   // every rank has put its tensor out
            using var sum = zeros_like(tensor);
            for (int r = 0; r < group.WorldSize; r++)
            {
                var other = group._slots[r]!;
                if (!other.shape.SequenceEqual(tensor.shape) || other.dtype != tensor.dtype)
                    throw new MeteoraException($"all-reduce: rank {r} gave {other.dtype} [{string.Join(", ", other.shape)}], rank {rank} {tensor.dtype} [{string.Join(", ", tensor.shape)}]");
                sum.add_(other.to(tensor.device));                            // rank order: the same sum on every rank
            }
            group.Wait(rank, "all-reduce");                                   // every rank has read every tensor
            tensor.copy_(sum);
            group.Wait(rank, "all-reduce");                                   // nobody reuses a slot before all wrote
        }

        public void Broadcast(Tensor tensor, int root = 0)
        {
            if (root < 0 || root >= group.WorldSize) throw new MeteoraException($"broadcast: root {root} is not in 0…{group.WorldSize - 1}");
            if (rank == root) group._slots[root] = tensor;
            group.Wait(rank, "broadcast");
            if (rank != root)
            {
                var source = group._slots[root]!;
                if (!source.shape.SequenceEqual(tensor.shape))
                    throw new MeteoraException($"broadcast: rank {root} has [{string.Join(", ", source.shape)}], rank {rank} [{string.Join(", ", tensor.shape)}]");
                tensor.copy_(source.to(tensor.device));
            }
            group.Wait(rank, "broadcast");
        }

        public void Barrier() => group.Wait(rank, "barrier");

        public void Dispose() { }
    }
}
