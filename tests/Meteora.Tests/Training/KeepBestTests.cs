using Meteora.Data;
using Meteora.IO;
using Meteora.Training;
using static TorchSharp.torch;

namespace Meteora.Tests.Training;

/// <summary><see cref="TrainingOptions.KeepBest"/>: the artifact holds the weights of the lowest held-out loss.</summary>
public class KeepBestTests
{
    // A far-off random start, a few training rows and a high learning rate: the held-out loss first falls (the
    // start's large logits shrink) and then rises (the table memorises the training rows).
    private static readonly List<EncodedExample> Train = BigramObjective.Data(6, seed: 3);
    private static readonly List<EncodedExample> Held = BigramObjective.Data(40, seed: 4);
    private static readonly TrainingOptions Options = new()
    {
        Steps = 40, BatchSize = 6, LearningRate = 0.3, ClipNorm = 0, Seed = 2, WarmupSteps = 0, EvalEvery = 2, KeepBest = true,
    };

    private static float[] Table(string file)
    {
        using var f = SafeTensorsFile.Open(file);
        using var t = f.Load("table");
        return t.data<float>().ToArray();
    }

    private static List<(int Step, double Loss)> EvalLosses(string dir) =>
        File.ReadLines(Path.Combine(dir, "metrics.jsonl")).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement)
            .Where(e => e.GetProperty("kind").GetString() == "eval")
            .Select(e => (e.GetProperty("step").GetInt32(), e.GetProperty("eval_loss").GetDouble())).ToList();

    [Fact]
    public void TheArtifactHoldsTheWeightsOfTheLowestHeldOutLoss()
    {
        using var dir = Fixture.TempDir();
        var loop = new TrainingLoop(new BigramObjective(5, initScale: 4), Options, dir["best"], 0, CPU);
        loop.Run(Train, Held);
        var losses = EvalLosses(dir["best"]);
        var (bestStep, bestLoss) = losses.MinBy(x => x.Loss);
        Assert.InRange(bestStep, 2, 38);                                   // the case this test is about: neither end
        Assert.True(losses[^1].Loss > bestLoss + 1e-3, $"the held-out loss must rise after step {bestStep}");
        // What the run reports (train-lora's "eval loss", the demo's log) describes the written weights, not the last step's.
        Assert.Equal(bestStep, loop.KeptStep);
        Assert.Equal(bestLoss, loop.WrittenEvaluation["eval_loss"], 5);   // metrics.jsonl keeps 7 digits
        Assert.Equal(losses[^1].Loss, loop.LastEvaluation["eval_loss"], 5);
        var logged = File.ReadLines(Path.Combine(dir["best"], "metrics.jsonl")).Last();
        Assert.Contains($"\"step\":{bestStep},\"kind\":\"best\"", logged);

        // The weights of that step: the same run stopped there (same schedule) keeps them in its checkpoint.
        new TrainingLoop(new BigramObjective(5, initScale: 4), Options with { KeepBest = false, StopAfter = bestStep }, dir["stopped"], 0, CPU).Run(Train, Held);
        Assert.Equal(Table(Path.Combine(TrainingCheckpoint.PathIn(dir["stopped"]), "trainable.safetensors")), Table(Path.Combine(dir["best"], "table.safetensors")));
        // Without --keep-best the artifact is the last step's: another table.
        var plain = new TrainingLoop(new BigramObjective(5, initScale: 4), Options with { KeepBest = false }, dir["last"], 0, CPU);
        plain.Run(Train, Held);
        Assert.Null(plain.KeptStep);
        Assert.Equal(losses[^1].Loss, plain.WrittenEvaluation["eval_loss"], 5);
        Assert.NotEqual(Table(Path.Combine(dir["last"], "table.safetensors")), Table(Path.Combine(dir["best"], "table.safetensors")));
    }

    [Fact]
    public void AResumedRunKeepsTheSameBestWeights()
    {
        using var dir = Fixture.TempDir();
        new TrainingLoop(new BigramObjective(5, initScale: 4), Options, dir["straight"], 0, CPU).Run(Train, Held);
        int bestStep = EvalLosses(dir["straight"]).MinBy(x => x.Loss).Step;
        // Interrupted after the best step: the checkpoint must carry the kept weights, or the resumed run loses them.
        var stopped = new TrainingLoop(new BigramObjective(5, initScale: 4), Options with { StopAfter = bestStep + 3 }, dir["resumed"], 0, CPU).Run(Train, Held);
        Assert.Equal(TrainingOutcome.Interrupted, stopped);
        Assert.True(File.Exists(Path.Combine(TrainingCheckpoint.PathIn(dir["resumed"]), "best.safetensors")));
        new TrainingLoop(new BigramObjective(5, initScale: 4), Options with { Resume = true }, dir["resumed"], 0, CPU).Run(Train, Held);
        Assert.Equal(Table(Path.Combine(dir["straight"], "table.safetensors")), Table(Path.Combine(dir["resumed"], "table.safetensors")));
    }

    [Fact]
    public void KeepBestNeedsHeldOutExamplesAndEvaluations()
    {
        using var dir = Fixture.TempDir();
        Assert.Contains("no held-out examples", Assert.Throws<MeteoraException>(() =>
            new TrainingLoop(new BigramObjective(5, initScale: 4), Options, dir["a"], 0, CPU).Run(Train, null)).Message);
        Assert.Contains("--eval-every", Assert.Throws<MeteoraException>(() =>
            new TrainingLoop(new BigramObjective(5, initScale: 4), Options with { EvalEvery = 0 }, dir["b"], 0, CPU).Run(Train, Held)).Message);
        // train-lora chooses on held-out training rows, never on test.jsonl.
        string data = FixtureTasks.Write(dir["data"], perTask: 20);
        var e = Assert.Throws<MeteoraException>(() => LoraTrainer.Train(Fixture.Base, Path.Combine(data, "add"), dir["lora"],
            new Meteora.Lora.LoraConfig { R = 2, LoraAlpha = 4, TargetModules = ["q_proj"] }, new TrainingOptions { Steps = 2, EvalEvery = 1, KeepBest = true }, CPU, ScalarType.Float32));
        Assert.Contains("--keep-best chooses among held-out training examples: give --eval-fraction", e.Message);
    }

    [Fact]
    public void HoldOutTakesASeededShareOfEveryTask()
    {
        var rows = Enumerable.Range(0, 30).Select(i => (new TaskExample($"p{i}", $"r{i}"), i < 20 ? 0 : 1)).ToList();
        var (train, held) = LoraTrainer.HoldOut(rows, 0.1, seed: 4);
        Assert.Equal(2, held.Count(r => r.Task == 0));
        Assert.Equal(1, held.Count(r => r.Task == 1));
        Assert.Equal(rows.Select(r => r.Item1.Prompt).Order(), train.Concat(held).Select(r => r.Example.Prompt).Order());   // a partition
        Assert.Equal(held, LoraTrainer.HoldOut(rows, 0.1, seed: 4).Held);
        Assert.NotEqual(held, LoraTrainer.HoldOut(rows, 0.1, seed: 5).Held);
    }
}
