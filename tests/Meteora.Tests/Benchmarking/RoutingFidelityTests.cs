using Meteora.Benchmarking;
using Meteora.Moe;
using static TorchSharp.torch;

namespace Meteora.Tests.Benchmarking;

/// <summary><c>bench routing</c>: low-precision routing against the float32 model's.</summary>
public class RoutingFidelityTests
{
    [Fact]
    public void AgreementCountsDecisionsWhoseTopKSetsAreEqualInAnyOrder()
    {
        var reference = new Dictionary<string, long[][]> { ["q"] = [[0, 1], [2, 0], [1, 2]], ["k"] = [[3, 1]] };
        var other = new Dictionary<string, long[][]> { ["q"] = [[1, 0], [2, 1], [1, 2]], ["k"] = [[3, 1]] };
        Assert.Equal((4L, 3L), RoutingFidelity.Agreement(reference, other));
        Assert.Throws<MeteoraException>(() => RoutingFidelity.Agreement(reference, new Dictionary<string, long[][]> { ["q"] = [[0, 1]], ["k"] = [[3, 1]] }));
    }

    [Fact]
    public void TheFixtureInBFloat16IsComparedPerProjectionAndTokenWithExactRankingOffAndOn()
    {
        bool before = ExactRanking.Enabled;
        using var ids = randint(0, 256, [1, 40], generator: new Generator(5));
        var rows = RoutingFidelity.Measure(d => MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, d), ids, topK: 2, ScalarType.BFloat16);
        Assert.Equal(before, ExactRanking.Enabled);                                           // the switch is restored
        Assert.Equal(3, rows.Count);
        int projections = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32).Projections.Count;
        foreach (var recorded in rows.Take(2))
        {
            Assert.Equal(projections * 40L, recorded.Decisions);
            Assert.InRange(recorded.Agreeing!.Value, projections * 40L * 9 / 10, projections * 40L);   // bfloat16 routes nearly as float32
            Assert.InRange(recorded.MaxLogitDifference, 1e-6, 5);                              // bfloat16 is not float32
        }
        Assert.NotNull(rows[1].Reranked);
        Assert.InRange(rows[1].NearTies!.Value, 0, projections * 40L);                         // counted on the exact run only
        Assert.Null(rows[0].NearTies);
        // The guarantee, measured: with exact ranking every decision is the float32 gate's on the same input.
        Assert.Equal(rows[1].Decisions, rows[1].SameInputAgreeing);
        Assert.InRange(rows[0].SameInputAgreeing!.Value, 0, rows[0].Decisions!.Value);
        // On the CPU the unrecorded run takes the same ATen path as the recorded one: the same logits.
        Assert.Equal(0, rows[2].MaxDifferenceFromAten);
    }

    [Fact]
    public void TheCommandRefusesFloat32AndAModelWithoutItsCheckpoint()
    {
        CliRunner.AssertUserError(CliRunner.Run("bench", "routing", "--dtype", "float32"), "give --dtype bfloat16 or float16");
        CliRunner.AssertUserError(CliRunner.Run("bench", "routing", "--dtype", "bfloat16", "--model", Fixture.Base), "give --model and --meteora together");
    }
}
