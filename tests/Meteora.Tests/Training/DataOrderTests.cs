using Meteora.Training;

namespace Meteora.Tests.Training;

public class DataOrderTests
{
    [Theory]
    [InlineData(1, 0)]
    [InlineData(2, 1)]
    [InlineData(33, 6)]
    [InlineData(64, 6)]
    [InlineData(65, 7)]
    [InlineData(300, 9)]
    public void LengthBucketIsTheCeilingOfLog2(int tokens, int bucket) => Assert.Equal(bucket, DataOrder.LengthBucket(tokens));

    [Fact]
    public void LengthBucketsMakeEveryFullMicroBatchOneBucketAndStillVisitEveryExampleOncePerEpoch()
    {
        // 100 short and 28 long examples of 4 tasks, batches of 8: 12 full short batches, 3 full long ones, 8 leftovers.
        int n = 128, batch = 8;
        var groups = Enumerable.Range(0, n).Select(i => i % 4).ToList();
        var lengths = Enumerable.Range(0, n).Select(i => i % 32 < 7 ? 300 : 40).ToList();
        var order = new DataOrder(groups, seed: 3, bucketOf: lengths.Select(DataOrder.LengthBucket).ToList(), batchSize: batch);
        Assert.Equal(n, order.EpochLength);

        var epoch = Enumerable.Range(0, n / batch).Select(k => order.MicroBatch(k, batch)).ToList();
        Assert.Equal(Enumerable.Range(0, n), epoch.SelectMany(b => b).Order());                 // a permutation
        int homogeneous = epoch.Count(b => b.Select(i => lengths[i]).Distinct().Count() == 1);
        Assert.True(homogeneous >= 15, $"{homogeneous} of 16 batches hold one length");         // only the leftovers mix
        Assert.All(epoch.Take(15), b => Assert.Single(b.Select(i => lengths[i]).Distinct()));   // leftovers end the epoch

        // The long batches are shuffled among the short ones, not all at one end.
        var longAt = epoch.Take(15).Select((b, k) => (k, lengths[b[0]])).Where(x => x.Item2 == 300).Select(x => x.k).ToList();
        Assert.Equal(3, longAt.Count);
        Assert.NotEqual([12, 13, 14], longAt);
        Assert.NotEqual([0, 1, 2], longAt);

        // Without buckets the order is unchanged from before (same seed, same permutation as a plain DataOrder).
        var plain = new DataOrder(groups, seed: 3);
        var same = new DataOrder(groups, seed: 3, bucketOf: null, batchSize: batch);
        Assert.Equal(Enumerable.Range(0, n).Select(i => plain.At(i)), Enumerable.Range(0, n).Select(i => same.At(i)));
    }
}
