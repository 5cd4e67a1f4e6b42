using Meteora.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Tests.Distributed;

public class InProcessGroupTests
{
    // Runs body(rank, communicator) on one thread per rank and waits for all.
    private static void OnRanks(int world, Action<int, ICommunicator> body, TimeSpan? timeout = null)
    {
        using var group = new InProcessGroup(world, timeout);
        var threads = Enumerable.Range(0, world).Select(r => Task.Factory.StartNew(() =>
        {
            using var comm = group.Communicator(r);
            body(r, comm);
        }, TaskCreationOptions.LongRunning)).ToArray();
        Task.WaitAll(threads);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void AllReduceSumsInRankOrderAndBroadcastCopiesTheRoot(int world)
    {
        var results = new float[world][];
        OnRanks(world, (r, comm) =>
        {
            using var t = tensor(new float[] { r + 1, 0.1f * r, -r });
            comm.AllReduceSum(t);
            using var b = full(3, (float)r);
            comm.Broadcast(b, root: world - 1);
            comm.Barrier();
            results[r] = [.. t.data<float>(), .. b.data<float>()];
        });
        float n = world;
        var expected = new float[] { n * (n + 1) / 2, 0f, -n * (n - 1) / 2 };
        for (int i = 0; i < world; i++) expected[1] += 0.1f * i;
        foreach (var row in results)
        {
            Assert.Equal(results[0], row);                                            // bitwise the same on every rank
            Assert.Equal(expected[0], row[0], 5); Assert.Equal(expected[1], row[1], 5); Assert.Equal(expected[2], row[2], 5);
            Assert.All(row[3..], v => Assert.Equal(world - 1, v));
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void RankSlicesAreDisjointAndMakeTheGlobalBatch(int world)
    {
        var global = Enumerable.Range(100, 12).ToArray();
        var parts = Enumerable.Range(0, world).Select(r => DataParallel.RowsOf(global, r, world)).ToList();
        Assert.Equal(global, parts.SelectMany(p => p).ToArray());                      // in order, each row once
        Assert.All(parts, p => Assert.Equal(12 / world, p.Length));
        Assert.Contains("multiple of the world size", Assert.Throws<MeteoraException>(() => DataParallel.Slice(10, 0, 4)).Message);
    }

    /// <summary>
    /// The principle the training loop is to follow: each rank's loss over its share, divided by the global count,
    /// gradients all-reduced — equals the single-process gradient of the whole global batch (to 1e-6 relative).
    /// A shuffled assignment of rows to targets (the negative control) does not.
    /// </summary>
    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void SummedShardGradientsEqualTheSingleProcessGradient(int world)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(7);
        var x = randn(new long[] { 12, 5 }, generator: gen);
        var y = randn(new long[] { 12, 3 }, generator: gen);
        var w0 = randn(new long[] { 5, 3 }, generator: gen);

        Tensor Grad(Tensor xs, Tensor ys, long globalCount)
        {
            var w = w0.clone().requires_grad_(true);
            var loss = (xs.matmul(w) - ys).pow(2).sum() / globalCount;                   // sum over the share / global count
            loss.backward();
            return w.grad!.detach().clone();
        }

        var single = Grad(x, y, 12);
        var shards = new Tensor[world];
        OnRanks(world, (r, comm) =>
        {
            var (start, count) = DataParallel.Slice(12, r, world);
            var g = Grad(x.narrow(0, start, count), y.narrow(0, start, count), 12);
            comm.AllReduceSum(g);
            shards[r] = g;
        });
        foreach (var g in shards)
            Assert.True((g - single).abs().max().item<float>() <= 1e-6f * single.abs().max().item<float>(), "sharded gradient differs");

        var shuffled = Grad(x, y[tensor(new long[] { 1, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 })], 12);
        Assert.True((shuffled - single).abs().max().item<float>() > 1e-3f, "the negative control must differ");
    }

    [Fact]
    public void ARankThatNeverComesIsATimeoutNotAHang()
    {
        using var group = new InProcessGroup(2, TimeSpan.FromMilliseconds(300));
        using var comm = group.Communicator(0);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<TimeoutException>(() => comm.Barrier());
        Assert.Contains("rank 0", e.Message);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void AnIdFileIsAcceptedOnlyIfYoungerThanTheLauncher()
    {
        // The launcher is the parent process (here the test host's): it started before this process, and an id file
        // written by this job is younger than it.
        var launcher = NcclCommunicator.LauncherStart();
        var self = System.Diagnostics.Process.GetCurrentProcess().StartTime.ToUniversalTime();
        Assert.True(launcher <= self, $"{launcher:o} > {self:o}");
    }

    [Fact]
    public void TheLaunchersVariablesAreReadStrictly()
    {
        Assert.Null(LaunchEnvironment.Read(_ => null));
        var env = new Dictionary<string, string> { ["WORLD_SIZE"] = "2", ["RANK"] = "1", ["LOCAL_RANK"] = "1", ["MASTER_ADDR"] = "127.0.0.1", ["MASTER_PORT"] = "29500" };
        var read = LaunchEnvironment.Read(k => env.GetValueOrDefault(k))!;
        Assert.Equal((1, 1, 2, 29500), (read.Rank, read.LocalRank, read.WorldSize, read.MasterPort!.Value));
        env["RANK"] = "2";
        Assert.Contains("RANK=2 is not below WORLD_SIZE=2", Assert.Throws<MeteoraException>(() => LaunchEnvironment.Read(k => env.GetValueOrDefault(k))).Message);
        env["RANK"] = "x";
        Assert.Contains("RANK=x is not an integer", Assert.Throws<MeteoraException>(() => LaunchEnvironment.Read(k => env.GetValueOrDefault(k))).Message);
    }
}
