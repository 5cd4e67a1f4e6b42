using Meteora.Moe;
using Meteora.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Meteora.Tests.Training;

/// <summary>
/// The CUDA-graphed training step (<see cref="GraphedTrainingStep"/>): its update and clipping against TorchSharp's
/// own (on the CPU, where the same functions run eagerly), the padding its fixed shape needs, the device-side gate
/// loss it captures, and graphed against eager training on a GPU.
/// </summary>
public class GraphedTrainingStepTests
{
    private static List<Parameter> RandomParameters(int seed)
    {
        using var gen = new Generator((ulong)seed);
        return [new Parameter(randn([5, 12], generator: gen)), new Parameter(randn([3, 7], generator: gen))];
    }

    private static readonly TrainingOptions Adam = new() { LearningRate = 3e-3, WeightDecay = 0.05, Beta1 = 0.8, Beta2 = 0.95, AdamEps = 1e-6 };

    /// <summary>Two copies of the same random parameters, each with its own TorchSharp AdamW (the caller disposes them).</summary>
    private static (List<Parameter> Reference, List<Parameter> Ours, AdamW RefOpt, AdamW OurOpt, List<AdamW.State> States) TwinAdamW(int seed)
    {
        var reference = RandomParameters(seed);
        var ours = RandomParameters(seed);
        var refOpt = optim.AdamW(reference, Adam.LearningRate, Adam.Beta1, Adam.Beta2, Adam.AdamEps, Adam.WeightDecay);
        var ourOpt = optim.AdamW(ours, Adam.LearningRate, Adam.Beta1, Adam.Beta2, Adam.AdamEps, Adam.WeightDecay);
        return (reference, ours, refOpt, ourOpt, ourOpt.state_dict().State.Cast<AdamW.State>().ToList());
    }

    /// <summary>Our parameters' gradients (zero where none yet) and moments moved into flat buffers.</summary>
    private static FlatOptimizerState Flat(List<Parameter> ours, List<AdamW.State> states)
    {
        foreach (var q in ours) q.grad ??= zeros_like(q);
        var flat = FlatOptimizerState.Adopt(ours, states);
        Assert.NotNull(flat);
        return flat!;
    }

    /// <summary>
    /// The same random gradient for each reference parameter and, added as autograd accumulates into the zeroed flat
    /// buffer's views, for ours.
    /// </summary>
    private static void SameGradients(List<Parameter> reference, List<Parameter> ours, FlatOptimizerState flat, Generator gen, double scale)
    {
        flat.ZeroGrad();
        foreach (var (r, q) in reference.Zip(ours))
        {
            using var g = randn(r.shape, generator: gen).mul_(scale);
            r.grad = g.clone();
            using var view = q.grad!;
            view.add_(g);
        }
    }

    [Theory]
    [InlineData(false, 1, 7, 1.0)]   // the update alone: the same ops on the same values, moments bit for bit
    [InlineData(true, 4, 9, 3.0)]    // clipped first, which sums the norm in another order: moments to float32 rounding
    public void TheFlatUpdateIsTorchSharpsAdamWWithTheStepFactorsOnTheDevice(bool clip, int seed, int gradientSeed, double scale)
    {
        var o = Adam;
        var (reference, ours, refOpt, ourOpt, states) = TwinAdamW(seed);
        using var _ = refOpt;
        using var __ = ourOpt;
        using var flat = Flat(ours, states);
        using var gen = new Generator((ulong)gradientSeed);
        double[] rates = [3e-3, 1e-3, 2e-4, 5e-3];   // a schedule: each step its own rate
        for (int t = 1; t <= rates.Length; t++)
        {
            SameGradients(reference, ours, flat, gen, scale);
            if (clip)
            {
                double want = nn.utils.clip_grad_norm_(reference, 0.5);
                using var norm = flat.ClipGradNorm(0.5);
                Assert.Equal(want, norm.item<float>(), 4);
            }
            foreach (var group in refOpt.ParamGroups) group.LearningRate = rates[t - 1];
            refOpt.step();
            using var hyper = tensor(GraphedTrainingStep.Hyper(o, rates[t - 1], t));
            flat.AdamWUpdate(hyper, o);
        }
        var refStates = refOpt.state_dict().State.Cast<AdamW.State>().ToList();
        for (int i = 0; i < ours.Count; i++)
        {
            if (clip)
            {
                TensorAssert.Close(refStates[i].exp_avg, states[i].exp_avg, 1e-6, $"first moment {i}");
                TensorAssert.Close(refStates[i].exp_avg_sq, states[i].exp_avg_sq, 1e-6, $"second moment {i}");
            }
            else
            {
                Assert.True(refStates[i].exp_avg.allclose(states[i].exp_avg, 0, 0), $"first moment {i}");
                Assert.True(refStates[i].exp_avg_sq.allclose(states[i].exp_avg_sq, 0, 0), $"second moment {i}");
            }
            // The parameters differ at most by the rounding of the last multiply-add.
            TensorAssert.Close(reference[i], ours[i], 1e-6, $"parameter {i}");
        }
        // The updates moved the parameters well beyond that tolerance, so the check is not vacuous.
        var start = RandomParameters(seed);
        for (int i = 0; i < ours.Count; i++)
            Assert.True((start[i] - ours[i]).abs().max().item<float>() > 1e-3f, $"the updates moved parameter {i}");
    }

    [Fact]
    public void ClippingIsLibtorchsWithTheNormLeftOnTheDevice()
    {
        foreach (double max in new[] { 0.3, 1e6 })   // clipped, and left alone
        {
            var (reference, ours, refOpt, ourOpt, states) = TwinAdamW(2);
            using var _ = refOpt;
            using var __ = ourOpt;
            using var flat = Flat(ours, states);
            using var gen = new Generator(3);
            SameGradients(reference, ours, flat, gen, 4);
            double want = nn.utils.clip_grad_norm_(reference, max);
            using var norm = flat.ClipGradNorm(max);
            Assert.Equal(want, norm.item<float>(), 4);
            for (int i = 0; i < ours.Count; i++) TensorAssert.Close(reference[i].grad!, ours[i].grad!, 1e-6, $"gradient {i}, max {max}");
        }
    }

    /// <summary>The fixture's MeteoRA model in float32 on the CPU, routing top-2.</summary>
    private static MeteoraModel FixtureTop2()
    {
        var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        m.Configure(topK: 2);
        return m;
    }

    private static List<EncodedExample> TwoRows(int[] ids, bool weighted)
    {
        var a = ids;
        var b = ids[..^3];
        return [
            new EncodedExample(a, a.Select((_, t) => t + 1 < a.Length).ToArray(), 0, false) { GateFrom = 2 },
            new EncodedExample(b, b.Select((_, t) => t + 1 < b.Length).ToArray(), 2, false)
            {
                LossWeights = weighted ? b.Select((_, t) => t % 2 == 0 ? 0.5f : 2f).ToArray() : null,
            },
        ];
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PaddingToTheGraphsShapeLeavesEveryLossUnchanged(bool weighted)
    {
        using var m = FixtureTop2();
        var rows = TwoRows(Fixture.PromptIds(0), weighted);
        using var noGrad = no_grad();
        using var plain = TrainingBatch.Collate(rows, 0, CPU);
        using var padded = TrainingBatch.Collate(rows, 0, CPU, padRows: 4, padLength: 16, weighted: true);
        Assert.Equal(new long[] { 4, 16 }, padded.Ids.shape);
        var a = MeteoraLoss.Compute(m, plain, 50);
        var b = MeteoraLoss.Compute(m, padded, 50);
        foreach (var (x, y, name) in new[] { (a.Lm, b.Lm, "lm"), (a.Gate, b.Gate, "gate"), (a.Total, b.Total, "total") })
            Assert.True(Math.Abs(x.item<float>() - y.item<float>()) <= 1e-5 * Math.Abs(x.item<float>()), $"{name}: {x.item<float>()} vs {y.item<float>()}");
        Assert.Equal(a.Decisions.item<double>(), b.Decisions.item<double>());
        Assert.Equal(a.Correct.item<double>(), b.Correct.item<double>());
        int gated = (rows[0].Ids.Length - 1 - 2) + (rows[1].Ids.Length - 1);                  // before the last token, from GateFrom on
        Assert.Equal(gated * m.Projections.Count, (int)a.Decisions.item<double>());          // gated positions × projections
    }

    [Fact]
    public void TheGateLossIsTheMeanCrossEntropyOverEveryGatedPositionOfEveryProjection()
    {
        using var m = FixtureTop2();
        var rows = TwoRows(Fixture.PromptIds(1), weighted: false);
        using var noGrad = no_grad();
        using var batch = TrainingBatch.Collate(rows, 0, CPU);
        var got = MeteoraLoss.Compute(m, batch, 50);
        // Reference: each projection's gated rows selected, cross-entropy summed, one mean over all (projection, position) pairs.
        using var recorder = new RoutingRecorder { RecordLogits = true };
        MeteoraLoss.ForwardRecordingGates(m, batch.Ids, recorder);
        var targets = batch.TokenTasks.masked_select(batch.GateMask);
        double sum = 0, correct = 0, count = 0;
        foreach (var (_, logits) in recorder.Logits)
        {
            var selected = logits.masked_select(batch.GateMask.unsqueeze(-1)).view(-1, logits.shape[^1]);
            sum += nn.functional.cross_entropy(selected, targets, reduction: nn.Reduction.Sum).item<float>();
            correct += selected.argmax(-1).eq(targets).sum().item<long>();
            count += selected.shape[0];
        }
        Assert.True(Math.Abs(got.Gate.item<float>() - sum / count) <= 1e-5 * sum / count, $"{got.Gate.item<float>()} vs {sum / count}");
        Assert.Equal(correct, got.Correct.item<double>());
        Assert.Equal(count, got.Decisions.item<double>());
    }

    [Fact]
    public void WithTheStepsCountsTheGateLossIsTheBatchsShareOfTheStepsMean()
    {
        using var m = FixtureTop2();
        var rows = TwoRows(Fixture.PromptIds(2), weighted: false);
        using var noGrad = no_grad();
        using var batch = TrainingBatch.Collate(rows, 0, CPU);
        var own = MeteoraLoss.Compute(m, batch, 50);
        double gatedPositions = own.Decisions.item<double>() / m.Projections.Count;
        // The step holds this batch and others with three times its gated positions: the batch's term is a quarter of its mean.
        var share = MeteoraLoss.Compute(m, batch, 50, new LossCounts(rows.Sum(r => r.LossTokens) * 4.0, gatedPositions * 4));
        Assert.Equal(4 * own.Decisions.item<double>(), share.Decisions.item<double>());
        Assert.True(Math.Abs(own.Gate.item<float>() / 4 - share.Gate.item<float>()) <= 1e-6 * own.Gate.item<float>(),
            $"{own.Gate.item<float>() / 4} vs {share.Gate.item<float>()}");
        Assert.Equal(own.Correct.item<double>(), share.Correct.item<double>());
    }

    [Theory]
    // An 8B model with 224 routed projections: launch-bound at 4 × 512, so the graph wins even with twice the tokens;
    // GPU-bound at 8 rows, where doubling the tokens by padding costs more than the launches saved.
    [InlineData(8_600_000_000L, 224, 4, 512, 512.0, true)]
    [InlineData(8_600_000_000L, 224, 4, 512, 256.0, true)]
    [InlineData(8_600_000_000L, 224, 8, 512, 256.0, false)]
    [InlineData(8_600_000_000L, 224, 8, 512, 512.0, true)]
    // A small model is launch-bound whatever the padding (the fixture on the H200: 4.2× faster graphed with 100 % padding).
    [InlineData(3_000_000L, 14, 8, 91, 45.5, true)]
    // Sizes unknown: padding may add at most half the tokens.
    [InlineData(0L, 0, 8, 100, 80.0, true)]
    [InlineData(0L, 0, 8, 100, 50.0, false)]
    public void AutoGraphsWhenThePaddedGpuWorkCostsLessThanStepByStep(long parameters, int projections, int rows, int length, double mean, bool graph)
    {
        var (chosen, why) = TrainingLoop.ChooseGraph(parameters, projections, rows, length, mean);
        Assert.Equal(graph, chosen);
        if (!graph) Assert.Contains("--cuda-graph on to graph anyway", why);
    }

    [Fact]
    public void CudaGraphOnIsRefusedOffTheGpuBeforeAnythingIsWritten()
    {
        using var dir = Fixture.TempDir();
        string data = FixtureTasks.Write(dir["data"], perTask: 10);
        var r = CliRunner.Run(FixtureTasks.TrainGateArgs(data, "--out", dir["m"], "--steps", "2", "--cuda-graph", "on"));
        CliRunner.AssertUserError(r, "--cuda-graph on", "not on a CUDA device (--device cpu)");
        Assert.False(Directory.Exists(dir["m"]) && Directory.EnumerateFileSystemEntries(dir["m"]).Any(), "nothing is written");
    }

    /// <summary>
    /// On a GPU: gate training with every step replayed from one CUDA graph ends with the gates of step-by-step training
    /// (bfloat16 model, so within bfloat16-sized differences), and the graph was really used.
    /// </summary>
    [CudaFact]
    public void GraphedGateTrainingEndsWithTheGatesOfEagerTraining()
    {
        using var dir = Fixture.TempDir();
        string data = FixtureTasks.Write(dir["data"], perTask: 40);
        var gates = new Dictionary<string, Dictionary<string, Tensor>>();
        foreach (bool graph in new[] { false, true })
        {
            var progress = new RecordingProgress();
            var options = new TrainingOptions { Steps = 12, BatchSize = 4, Seed = 1, LearningRate = 1e-2, CudaGraphs = graph };
            GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir[graph ? "g" : "e"], new GateTrainingOptions(), options,
                new Device(DeviceType.CUDA, 0), ScalarType.BFloat16, progress);
            // 12 steps: the first eager on the capture's stream, the other 11 replayed.
            if (graph) Assert.Contains("CUDA graph: 11 of 12 steps replayed from the graph", progress.Messages);
            Assert.DoesNotContain(progress.Messages, x => x.Contains("could not be captured"));
            gates[graph ? "g" : "e"] = Meteora.IO.SafeTensorsFile.Open(Path.Combine(dir[graph ? "g" : "e"], "gates.safetensors")) is var f
                ? f.Entries.Keys.ToDictionary(k => k, k => f.Load(k).to(ScalarType.Float32)) : [];
        }
        Assert.NotEmpty(gates["e"]);
        foreach (var (name, eager) in gates["e"]) TensorAssert.RelativeClose(eager, gates["g"][name], 2e-2, name);
    }
}
