using Meteora.Distributed;
using Meteora.IO;
using Meteora.Moe;
using Meteora.Tests.Training;
using Meteora.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Meteora.Tests.Distributed;

/// <summary>
/// The training loop's data parallelism on threads of one process (<see cref="InProcessGroup"/>): a step on W ranks
/// is the single-process step on the same global batch, a run resumes across world sizes, and a run whose ranks
/// disagree stops with one message.
/// </summary>
public class DataParallelTrainingTests
{
    /// <summary>Runs <paramref name="body"/>(rank, communicator) on one thread per rank and rethrows the first failure.</summary>
    private static T[] OnRanks<T>(int world, Func<int, ICommunicator?, T> body)
    {
        if (world == 1) return [body(0, null)];
        using var group = new InProcessGroup(world, TimeSpan.FromSeconds(60));
        var ranks = Enumerable.Range(0, world).Select(r => Task.Factory.StartNew(() =>
        {
            using var comm = group.Communicator(r);
            return body(r, comm);
        }, TaskCreationOptions.LongRunning)).ToArray();
        try { Task.WaitAll(ranks); }
        catch (AggregateException e) { throw e.Flatten().InnerExceptions.First(x => x is not TimeoutException and not BarrierPostPhaseException); }
        return ranks.Select(t => t.Result).ToArray();
    }

    private static BigramObjective[] Train(int world, IReadOnlyList<EncodedExample> data, string outDir, TrainingOptions options) =>
        OnRanks(world, (rank, comm) =>
        {
            var objective = new BigramObjective(seed: 5 + rank);   // ranks start different: rank 0's weights are broadcast
            new TrainingLoop(objective, options, outDir, padId: 0, CPU, communicator: comm).Run(data, null);
            return objective;
        });

    private static readonly TrainingOptions Options = new()
    {
        Steps = 3, BatchSize = 6, GradAccum = 2, LearningRate = 1e-2, ClipNorm = 0, Seed = 11, WarmupSteps = 0,
    };

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void AStepOnWRanksUsesTheSingleProcessGradientOfTheGlobalBatch(int world)
    {
        using var dir = Fixture.TempDir();
        var data = BigramObjective.Data(40, seed: 1);
        var single = Train(1, data, dir["single"], Options)[0];
        var ranks = Train(world, data, dir[$"w{world}"], Options);

        // The ranks' rows are disjoint and together the global batches (3 steps × 12 rows): the same multiset of rows.
        Assert.Equal(single.Rows.Order(), ranks.SelectMany(r => r.Rows).Order());
        Assert.All(ranks, r => Assert.Equal(36 / world, r.Rows.Count));

        // Every rank applied the single process's gradient of each step (to 1e-6 relative).
        foreach (var r in ranks)
            for (int step = 0; step < 3; step++)
            {
                float scale = single.Gradients[step].Max(Math.Abs);
                float diff = single.Gradients[step].Zip(r.Gradients[step], (a, b) => Math.Abs(a - b)).Max();
                Assert.True(diff <= 1e-6f * scale, $"world {world}, step {step}: gradient differs by {diff} (max {scale})");
            }

        // Negative control: another data order (seed) gives another gradient.
        var other = Train(1, data, dir["other"], Options with { Seed = 12 })[0];
        Assert.True(other.Gradients[0].Zip(single.Gradients[0], (a, b) => Math.Abs(a - b)).Max() > 1e-3f, "the control must differ");
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void RehearsalRowsAreSharedAndNormalisedLikeTheTaskRows(int world)
    {
        using var dir = Fixture.TempDir();
        var data = BigramObjective.Data(40, seed: 1);
        var replay = BigramObjective.Data(30, seed: 9);
        var options = Options with { ReplayRows = 2, ReplayWeight = 0.5 };   // 2 × 2 rehearsal rows per step
        BigramObjective[] Run(int w, string outDir) => OnRanks(w, (rank, comm) =>
        {
            var objective = new BigramObjective(seed: 5);
            new TrainingLoop(objective, options, outDir, padId: 0, CPU, communicator: comm).Run(data, null, default, replay);
            return objective;
        });
        var single = Run(1, dir["single"])[0];
        foreach (var r in Run(world, dir["ranks"]))
            for (int step = 0; step < 3; step++)
            {
                float diff = single.Gradients[step].Zip(r.Gradients[step], (a, b) => Math.Abs(a - b)).Max();
                Assert.True(diff <= 1e-6f * single.Gradients[step].Max(Math.Abs), $"world {world}, step {step}: gradient differs by {diff}");
            }
        // Control: without rehearsal the gradient is another one.
        var plain = Train(1, data, dir["plain"], Options)[0];
        Assert.True(plain.Gradients[0].Zip(single.Gradients[0], (a, b) => Math.Abs(a - b)).Max() > 1e-3f);
    }

    [Fact]
    public void ACancelOnOneRankStopsEveryRankAtTheSameStep()
    {
        using var dir = Fixture.TempDir();
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        var outcomes = OnRanks(2, (rank, comm) => new TrainingLoop(new BigramObjective(5), Options with { Steps = 6 }, dir["m"], 0, CPU, communicator: comm)
            .Run(BigramObjective.Data(40, seed: 1), null, rank == 1 ? cancelled.Token : default));
        Assert.All(outcomes, o => Assert.Equal(TrainingOutcome.Interrupted, o));
        var state = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(TrainingCheckpoint.PathIn(dir["m"]), "state.json")));
        Assert.Equal(1, state.RootElement.GetProperty("Step").GetInt32());
    }

    [Fact]
    public void PerRankMeansWouldNotBeTheGlobalGradient()
    {
        // The counterfactual the loop avoids: averaging each rank's own mean loss weighs a short row of a rank with
        // few loss tokens like a long one. With the data above, that is measurably another gradient.
        var data = BigramObjective.Data(12, seed: 1);
        var shares = Enumerable.Range(0, 2).Select(r => data.Skip(r * 6).Take(6).ToList()).ToList();
        var objective = new BigramObjective(5);
        float[] Grad(Action backward)
        {
            objective.Parameters[0].grad?.zero_();
            backward();
            return objective.Parameters[0].grad!.data<float>().ToArray();
        }
        var global = LossCounts.Of(data);
        var right = Grad(() => { foreach (var s in shares) { using var b = TrainingBatch.Collate(s, 0, CPU); objective.Loss(b, true, global).Loss.backward(); } });
        var whole = Grad(() => { using var b = TrainingBatch.Collate(data, 0, CPU); objective.Loss(b, true).Loss.backward(); });
        var meanOfMeans = Grad(() => { foreach (var s in shares) { using var b = TrainingBatch.Collate(s, 0, CPU); (objective.Loss(b, true).Loss / 2).backward(); } });
        Assert.True(right.Zip(whole, (a, b) => Math.Abs(a - b)).Max() <= 1e-6f * whole.Max(Math.Abs));
        Assert.True(meanOfMeans.Zip(whole, (a, b) => Math.Abs(a - b)).Max() > 1e-4f * whole.Max(Math.Abs));
    }

    [Fact]
    public void ResumingOnTwoThenOneThenFourRanksEndsWithTheUninterruptedWeights()
    {
        using var dir = Fixture.TempDir();
        var data = BigramObjective.Data(40, seed: 2);
        var options = Options with { Steps = 9, BatchSize = 4, GradAccum = 2 };   // global batch 8: divisible by 1, 2, 4
        Train(1, data, dir["straight"], options);

        Assert.All(Train(2, data, dir["staged"], options with { StopAfter = 3 }), r => Assert.Equal(3, r.Gradients.Count));
        Assert.Single(Train(1, data, dir["staged"], options with { Resume = true, StopAfter = 6 }));
        Assert.All(Train(4, data, dir["staged"], options with { Resume = true }), r => Assert.Equal(3, r.Gradients.Count));

        Train(1, data, dir["control"], options with { Seed = 12 });
        using var straight = SafeTensorsFile.Open(Path.Combine(dir["straight"], "table.safetensors"));
        using var staged = SafeTensorsFile.Open(Path.Combine(dir["staged"], "table.safetensors"));
        using var control = SafeTensorsFile.Open(Path.Combine(dir["control"], "table.safetensors"));
        using var a = straight.Load("table");
        float diff = (a - staged.Load("table")).abs().max().item<float>();
        Assert.True(diff <= 1e-5f, $"staged 2 → 1 → 4 differs from uninterrupted by {diff}");
        Assert.True((a - control.Load("table")).abs().max().item<float>() > 1e-3f, "a run with another data order must differ");
        // One run's log: the metrics lines of steps 1…9 once each, written by rank 0 only.
        var steps = File.ReadLines(Path.Combine(dir["staged"], "metrics.jsonl")).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement)
            .Where(e => e.GetProperty("kind").GetString() == "train").Select(e => e.GetProperty("step").GetInt32()).ToList();
        Assert.Equal(Enumerable.Range(1, 9), steps);
    }

    [Fact]
    public void AGlobalBatchTheWorldSizeDoesNotDivideIsRefused()
    {
        using var dir = Fixture.TempDir();
        var e = Assert.Throws<MeteoraException>(() => Train(4, BigramObjective.Data(20, 1), dir["m"], Options with { BatchSize = 3, GradAccum = 2 }));
        Assert.Contains("--batch-size × --grad-accum = 6 rows (the global batch) must be a multiple of the world size 4", e.Message);
    }

    [Fact]
    public void RanksWithOtherDataStopWithOneMessage()
    {
        using var dir = Fixture.TempDir();
        var e = Assert.Throws<MeteoraException>(() => OnRanks(2, (rank, comm) =>
        {
            new TrainingLoop(new BigramObjective(5), Options, dir["m"], 0, CPU, communicator: comm).Run(BigramObjective.Data(40, seed: 1 + rank), null);
            return 0;
        }));
        Assert.Contains("1 of 2 ranks have other trainable parameters, data or settings than rank 0", e.Message);
    }

    [Fact]
    public void GateTrainingOnTwoRanksEqualsOneProcess()
    {
        using var dir = Fixture.TempDir();
        string data = FixtureTasks.Write(dir["data"], perTask: 40);
        // The single process takes the global batch of 8 as one micro-batch (its own mean); the ranks take 4 rows each,
        // normalised by the step's counts — so a wrong LM or gate denominator would show.
        var options = new TrainingOptions { Steps = 10, BatchSize = 4, GradAccum = 2, LearningRate = 1e-2, Seed = 7, Balance = true, EvalLimit = 8 };
        var gate = new GateTrainingOptions { TopK = 2 };
        GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir["one"], gate, options with { BatchSize = 8, GradAccum = 1 }, CPU, ScalarType.Float32);
        var results = OnRanks(2, (rank, comm) => GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir["two"], gate, options, CPU, ScalarType.Float32, communicator: comm));
        Assert.All(results, r => Assert.Equal(TrainingOutcome.Completed, r.Outcome));
        Assert.Equal(results[0].FinalEval["eval_loss"], results[1].FinalEval["eval_loss"]);   // every rank holds the same gates

        using var a = SafeTensorsFile.Open(Path.Combine(dir["one"], MeteoraCheckpoint.GatesFile));
        using var b = SafeTensorsFile.Open(Path.Combine(dir["two"], MeteoraCheckpoint.GatesFile));
        float worst = 0;
        foreach (var k in a.Entries.Keys)
        {
            using var x = a.Load(k);
            using var y = b.Load(k);
            worst = Math.Max(worst, (x - y).abs().max().item<float>());
        }
        Assert.True(worst <= 1e-5f, $"2-rank gates differ from 1-process gates by {worst}");
        Assert.Equal(10, File.ReadLines(Path.Combine(dir["two"], "metrics.jsonl")).Count(l => l.Contains("\"kind\":\"train\"")));
    }
}
