using Meteora.Moe;
using Meteora.Training;
using static TorchSharp.torch;

namespace Meteora.Tests.Training;

/// <summary>
/// The low-precision copy of each gate follows the float32 gate (issue #18 item 8): after every optimiser step and every
/// load of trainable state, and a training run leaves the model out of its training form.
/// </summary>
public class GateCopyFreshnessTests
{
    private static int[] Ids => Fixture.PromptIds(0);

    /// <summary>Share of (projection, token) top-1 decisions equal to the float32 gate's top-1 on the same input.</summary>
    private static double AgreementWithTheFloat32Gates(MeteoraModel m)
    {
        bool exact = ExactRanking.Enabled;
        ExactRanking.Enabled = false;   // rank from the fused GEMM's bfloat16 logits: the copy is what routes
        try
        {
            using var recorder = new RoutingRecorder { RecordGateAgreement = true };
            m.Attach(recorder);
            using var ids = tensor(Ids.Select(i => (long)i).ToArray(), [1, Ids.Length]);
            using var _ = m.Forward(ids);
            m.Attach(null);
            long decisions = recorder.GateAgreement.Values.Sum(a => a.Decisions), agreeing = recorder.GateAgreement.Values.Sum(a => a.Agreeing);
            return (double)agreeing / decisions;
        }
        finally { ExactRanking.Enabled = exact; }
    }

    [Fact]
    public void AnOptimiserStepAndALoadRefreshTheBFloat16GateCopies()
    {
        using var noGrad = no_grad();
        using var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.BFloat16);
        m.Configure(topK: 1);
        var objective = new MeteoraObjective(m, 50, trainAdapters: false, Fixture.Base, [.. m.AdapterNames.Select(_ => (string?)null)]);
        Assert.True(AgreementWithTheFloat32Gates(m) > 0.95);
        var original = objective.TrainableState().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        foreach (var p in m.Projections) p.moe_gate.neg_();                                          // every ranking reversed, as a step might
        objective.AfterOptimizerStep();
        Assert.True(AgreementWithTheFloat32Gates(m) > 0.95, "after a step the copy routes as the float32 gate");
        objective.LoadTrainableState(original);                                                     // back to the original gates
        Assert.True(AgreementWithTheFloat32Gates(m) > 0.95, "after a load the copy routes as the float32 gate");
    }

    [Fact]
    public void TrainingEndsOutOfTheTrainingForm()
    {
        using var dir = Fixture.TempDir();
        using var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        m.Configure(topK: 2);
        var objective = new MeteoraObjective(m, 50, trainAdapters: false, Fixture.Base, [.. m.AdapterNames.Select(_ => (string?)null)]);
        var example = new EncodedExample(Ids, Ids.Select((_, t) => t + 1 < Ids.Length).ToArray(), 0, false);
        var loop = new TrainingLoop(objective, new TrainingOptions { Steps = 2, BatchSize = 1, LearningRate = 1e-3 }, dir["out"], padId: 0, CPU);
        Assert.Equal(TrainingOutcome.Completed, loop.Run([example, example], null));
        Assert.All(m.Projections, p => Assert.False(p.moe_gate.requires_grad));
    }
}
