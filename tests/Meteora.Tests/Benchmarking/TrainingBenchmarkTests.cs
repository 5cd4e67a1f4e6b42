using Meteora.Benchmarking;
using Meteora.Distributed;
using Meteora.Llama;
using static TorchSharp.torch;

namespace Meteora.Tests.Benchmarking;

public class TrainingBenchmarkTests
{
    [Fact]
    public void TheLoraBenchmarkTimesTheStepsAfterTheWarmUp()
    {
        var r = LoraTrainingBenchmark.Run(LlamaPresets.Resolve("small"), rank: 4, seqLen: 32, batch: 2, steps: 5, warmupSteps: 1, CPU, ScalarType.Float32);
        Assert.Equal((5, 3, 64, 1), (r.Steps, r.MeasuredSteps, r.TokensPerStep, r.World));   // steps 2…5 timed: 3 intervals
        Assert.True(r.SecondsPerStep > 0 && double.IsFinite(r.SecondsPerStep));
        Assert.Equal(r.TokensPerStep / r.SecondsPerStep, r.TokensPerSecond, 6);
    }

    [Fact]
    public void OnTwoRanksEachTrainsItsBatchAndTheTokensAreTheWorldsTotal()
    {
        using var group = new InProcessGroup(2, TimeSpan.FromSeconds(120));
        var ranks = Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            using var comm = group.Communicator(rank);
            return GateTrainingBenchmark.Run(LlamaPresets.Resolve("small"), adapters: 3, rank: 4, seqLen: 32, batch: 2, steps: 4, warmupSteps: 1, CPU, ScalarType.Float32, communicator: comm);
        }, TaskCreationOptions.LongRunning)).ToArray();
        Task.WaitAll(ranks);
        var lead = ranks[0].Result;
        Assert.Equal((2, 128), (lead.World, lead.TokensPerStep));                                 // 2 ranks × 2 × 32
        Assert.True(double.IsFinite(lead.TokensPerSecond) && lead.TokensPerSecond > 0);
        Assert.True(double.IsNaN(ranks[1].Result.SecondsPerStep));                                // only rank 0 keeps the clock
    }
}
