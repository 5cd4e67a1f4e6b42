using Meteora.IO;
using Meteora.Moe;
using Meteora.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Meteora.Tests.Training;

public class TrainGateTests
{
    private readonly ITestOutputHelper _out;
    public TrainGateTests(ITestOutputHelper output) => _out = output;

    [Fact]
    public void GatesLearnToRouteEveryTokenToItsTask()
    {
        using var dir = Fixture.TempDir();
        string data = FixtureTasks.Write(dir["data"]);
        var options = new TrainingOptions { Steps = 300, BatchSize = 16, LearningRate = 1e-2, WeightDecay = 0.01, ClipNorm = 0.3, Seed = 42, ResponseOnly = false };
        var result = GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir["m"], new GateTrainingOptions(), options, CPU, ScalarType.Float32);
        double acc = result.FinalEval["eval_gate_acc"], before = result.InitialEval!["eval_loss"], after = result.FinalEval["eval_loss"];
        _out.WriteLine($"eval gate accuracy {result.InitialEval["eval_gate_acc"]:P1} -> {acc:P1}; eval loss {before:F4} -> {after:F4} ({result.TrainExamples} train, {result.EvalExamples} eval)");
        Assert.True(acc > 0.95, $"eval gate accuracy {acc}");
        Assert.True(after < before, $"eval loss {before} -> {after}");
        Assert.Equal(60, result.EvalExamples);   // 10% of 3 × 200
        // Per task, over every held-out example, and logged to metrics.jsonl.
        Assert.Equal(FixtureTasks.Names.Order(), result.GateAccuracyByTask.Keys.Order());
        Assert.All(result.GateAccuracyByTask.Values, a => Assert.InRange(a, 0.9, 1.0));
        var logged = File.ReadLines(Path.Combine(dir["m"], "metrics.jsonl")).Last();
        using (var doc = System.Text.Json.JsonDocument.Parse(logged))
        {
            Assert.Equal("gate_acc_by_task", doc.RootElement.GetProperty("kind").GetString());
            foreach (var (task, a) in result.GateAccuracyByTask) Assert.Equal(a, doc.RootElement.GetProperty(task).GetDouble(), 5);
        }

        // The folder is a checkpoint that loads and routes the way training measured.
        foreach (var f in new[] { "meteora_config.json", "gates.safetensors", "metrics.jsonl", "loss_curve.png" })
            Assert.True(File.Exists(Path.Combine(dir["m"], f)), f);
        Assert.False(Directory.Exists(TrainingCheckpoint.PathIn(dir["m"])));
        using var m = MeteoraModel.Load(Fixture.Base, dir["m"], CPU, ScalarType.Float32);
        Assert.Equal(FixtureTasks.Names, m.AdapterNames);
    }

    [Fact]
    public void ResumeAfterAnInterruptionEndsWithTheSameGates()
    {
        using var dir = Fixture.TempDir();
        string data = FixtureTasks.Write(dir["data"], perTask: 40);
        var options = new TrainingOptions { Steps = 12, BatchSize = 4, GradAccum = 2, LearningRate = 1e-2, Seed = 7, Balance = true, CheckpointEvery = 5 };
        var gate = new GateTrainingOptions { TopK = 2 };
        GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir["straight"], gate, options, CPU, ScalarType.Float32);
        var stopped = GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir["resumed"], gate, options with { StopAfter = 7 }, CPU, ScalarType.Float32);
        Assert.Equal(TrainingOutcome.Interrupted, stopped.Outcome);
        // Settings outside TrainingOptions are part of the fingerprint too: resuming with another λ or top-k is refused.
        foreach (var changed in new[] { gate with { GateLossWeight = 5 }, gate with { TopK = 1 }, gate with { GateInit = "normal" },
                     gate with { Temperature = 2 }, gate with { TrainAdapters = true } })
        {
            var e = Assert.Throws<MeteoraException>(() =>
                GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir["resumed"], changed, options with { Resume = true }, CPU, ScalarType.Float32));
            Assert.Contains("other settings", e.Message);
        }
        // So is each adapter's LoRA config: the same name with another alpha is another run.
        var (name0, folder0) = FixtureTasks.Adapters[0];
        string altered = dir["altered"];
        Directory.CreateDirectory(altered);
        foreach (var f in Directory.GetFiles(folder0)) File.Copy(f, Path.Combine(altered, Path.GetFileName(f)));
        var loraConfig = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(altered, "adapter_config.json")))!.AsObject();
        loraConfig["lora_alpha"] = loraConfig["lora_alpha"]!.GetValue<double>() * 2;
        File.WriteAllText(Path.Combine(altered, "adapter_config.json"), loraConfig.ToJsonString());
        var otherAlpha = FixtureTasks.Adapters.Select((x, i) => i == 0 ? (name0, altered) : x).ToList();
        var alpha = Assert.Throws<MeteoraException>(() =>
            GateTrainer.Train(Fixture.Base, otherAlpha, data, dir["resumed"], gate, options with { Resume = true }, CPU, ScalarType.Float32));
        Assert.Contains("other settings", alpha.Message);
        GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir["resumed"], gate, options with { Resume = true }, CPU, ScalarType.Float32);

        using var a = SafeTensorsFile.Open(Path.Combine(dir["straight"], MeteoraCheckpoint.GatesFile));
        using var b = SafeTensorsFile.Open(Path.Combine(dir["resumed"], MeteoraCheckpoint.GatesFile));
        Assert.Equal(14, a.Entries.Count);
        foreach (var k in a.Entries.Keys)
            Assert.True(a.Load(k).equal(b.Load(k)).all().item<bool>(), $"{k} differs after resume");
    }

    [Fact]
    public void ADamagedOptimizerStateIsAOneLineErrorNamingTheFile()
    {
        using var dir = Fixture.TempDir();
        string data = FixtureTasks.Write(dir["data"], perTask: 20);
        var options = new TrainingOptions { Steps = 6, BatchSize = 4, LearningRate = 1e-2, Seed = 1, CheckpointEvery = 2 };
        var gate = new GateTrainingOptions { TopK = 2 };
        var stopped = GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir["m"], gate, options with { StopAfter = 3 }, CPU, ScalarType.Float32);
        Assert.Equal(TrainingOutcome.Interrupted, stopped.Outcome);
        string opt = Path.Combine(TrainingCheckpoint.PathIn(dir["m"]), "optimizer.bin");
        Assert.True(File.Exists(opt));
        File.WriteAllBytes(opt, new byte[] { 1, 2, 3, 4, 5, 6, 7 });                                 // cut short / overwritten
        var e = Assert.Throws<MeteoraException>(() =>
            GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir["m"], gate, options with { Resume = true }, CPU, ScalarType.Float32));
        Assert.Contains(opt, e.Message);
        Assert.Contains("optimizer state", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void ACheckpointWriteThatDiesMidwayKeepsThePreviousCheckpoint()
    {
        using var dir = Fixture.TempDir();
        string data = FixtureTasks.Write(dir["data"], perTask: 20);
        var options = new TrainingOptions { Steps = 10, BatchSize = 4, LearningRate = 1e-2, Seed = 1, CheckpointEvery = 3 };
        try
        {
            int writes = 0;
            // The second checkpoint (step 6) dies after writing its files, before it replaces the step-3 one.
            TrainingCheckpoint.BeforeCommit = _ => { if (++writes == 2) throw new IOException("disk full (injected)"); };
            var e = Assert.Throws<IOException>(() =>
                GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir["m"], new GateTrainingOptions(), options, CPU, ScalarType.Float32));
            Assert.Contains("injected", e.Message);
        }
        finally
        {
            TrainingCheckpoint.BeforeCommit = null;
        }
        string? found = TrainingCheckpoint.Find(dir["m"]);
        Assert.Equal(TrainingCheckpoint.PathIn(dir["m"]), found);
        Assert.Contains("\"Step\":3", File.ReadAllText(Path.Combine(found!, "state.json")));
        Assert.Empty(Directory.GetDirectories(dir["m"], "checkpoint.tmp-*"));
        // And training resumes from it to the end.
        var resumed = GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir["m"], new GateTrainingOptions(), options with { Resume = true }, CPU, ScalarType.Float32);
        Assert.Equal(TrainingOutcome.Completed, resumed.Outcome);
    }

    [Fact]
    public void TrainingTheAdaptersTooWritesASelfContainedCheckpoint()
    {
        using var dir = Fixture.TempDir();
        string data = FixtureTasks.Write(dir["data"], perTask: 20);
        var options = new TrainingOptions { Steps = 3, BatchSize = 4, LearningRate = 1e-2 };
        GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir["m"], new GateTrainingOptions { TrainAdapters = true }, options, CPU, ScalarType.Float32);
        Assert.True(File.Exists(Path.Combine(dir["m"], MeteoraCheckpoint.AdaptersFile)));
        using var m = MeteoraModel.Load(Fixture.Base, dir["m"], CPU, ScalarType.Float32);
        var original = Meteora.Lora.LoraAdapter.Load(Fixture.Adapter("add"), Meteora.Llama.LlamaConfig.Load(Fixture.Base));
        var trained = m.Adapters.Single(a => a.Name == "add");
        Assert.False(trained.Weights["model.layers.0.self_attn.q_proj"].A.allclose(original.Weights["model.layers.0.self_attn.q_proj"].A));
    }

    /// <summary>Packed sequences are built from the plain examples, so options that rewrite examples are refused with --pack.</summary>
    [Theory]
    [InlineData("restate")]
    [InlineData("in-context")]
    public void PackWithRestateOrInContextIsRefusedBeforeAnythingIsWritten(string option)
    {
        using var dir = Fixture.TempDir();
        string data = FixtureTasks.Write(dir["data"], perTask: 5);
        var options = option == "restate" ? new TrainingOptions { Steps = 1, RestateShare = 0.5 } : new TrainingOptions { Steps = 1, InContextShare = 0.5 };
        var e = Assert.Throws<MeteoraException>(() => GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir["m"],
            new GateTrainingOptions { Pack = 2 }, options, CPU, ScalarType.Float32));
        Assert.Contains($"--pack and --{option} cannot be combined", e.Message);
        Assert.False(Directory.Exists(dir["m"]));
    }

    [Fact]
    public void TasksAndAdaptersMustMatchByName()
    {
        using var dir = Fixture.TempDir();
        string data = FixtureTasks.Write(dir["data"], perTask: 5);
        Directory.CreateDirectory(Path.Combine(data, "sort"));
        File.WriteAllText(Path.Combine(data, "sort", "train.jsonl"), "{\"prompt\":\"a\",\"response\":\"b\"}\n");
        Directory.Delete(Path.Combine(data, "upper"), true);
        var e = Assert.Throws<MeteoraException>(() => GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir["m"],
            new GateTrainingOptions(), new TrainingOptions { Steps = 1 }, CPU, ScalarType.Float32));
        Assert.Contains("tasks without an adapter: [sort]", e.Message);
        Assert.Contains("adapters without a task folder (with train.jsonl): [upper]", e.Message);
    }

    [Fact]
    public void CliTrainGateOrdersAdaptersByNameAndRecordsIt()
    {
        using var dir = Fixture.TempDir();
        string data = FixtureTasks.Write(dir["data"], perTask: 10);
        var r = CliRunner.Run(FixtureTasks.TrainGateArgs(data, "--out", dir["m"], "--steps", "2", "--batch-size", "4"));
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(FixtureTasks.Names, MeteoraCheckpointConfig.Load(dir["m"]).Adapters.Select(a => a.Name).ToArray());
        var bad = CliRunner.Run(FixtureTasks.TrainGateArgs(data, "--out", dir["m2"], "--order", "upper,add"));
        CliRunner.AssertUserError(bad, "--order", "not listed: [reverse]");
    }
}

public class GateEvalOrderTests
{
    [Fact]
    public void EvaluationExamplesAreInterleavedByTaskSoALimitCoversEveryTask()
    {
        var examples = new[] { (0, 5), (1, 2), (2, 4) }
            .SelectMany(t => Enumerable.Range(0, t.Item2).Select(i => new Meteora.Training.EncodedExample([t.Item1, i], [true, false], t.Item1, false)))
            .ToList();
        var order = Meteora.Training.GateTrainer.Interleave(examples);
        Assert.Equal(examples.Count, order.Count);
        Assert.Equal(new[] { 0, 1, 2, 0, 1, 2, 0, 2, 0, 2, 0 }, order.Select(e => e.Task));
        foreach (int task in new[] { 0, 1, 2 })   // each task's examples keep their order
            Assert.Equal(Enumerable.Range(0, examples.Count(e => e.Task == task)), order.Where(e => e.Task == task).Select(e => e.Ids[1]));
    }
}

public class GateEvalCoverageTests
{
    /// <summary>
    /// #18 item 1 at its call site: GateTrainer itself interleaves the held-out examples before the loop's
    /// --eval-limit cut, so an evaluation limited to three examples still measures all three tasks (grouped by task,
    /// as they are read, the first three would all be add).
    /// </summary>
    [Fact]
    public void ALimitedEvaluationDuringTrainingCoversEveryTask()
    {
        using var dir = Fixture.TempDir();
        string data = FixtureTasks.Write(dir["data"]);
        var progress = new RecordingProgress();
        var options = new TrainingOptions { Steps = 1, BatchSize = 4, EvalLimit = 3, Seed = 1 };
        GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir["m"], new GateTrainingOptions(), options, CPU, ScalarType.Float32, progress);
        var line = Assert.Single(progress.Messages, m => m.StartsWith("evaluation during training:"));
        Assert.StartsWith("evaluation during training: 3 of 60 held-out examples (", line);
        foreach (var task in FixtureTasks.Names) Assert.Contains($"{task} 1", line);
    }

    [Fact]
    public void AnEvaluationLimitBelowOneIsRefused()
    {
        using var dir = Fixture.TempDir();
        string data = FixtureTasks.Write(dir["data"]);
        var r = CliRunner.Run(FixtureTasks.TrainGateArgs(data, "--out", dir["m"], "--steps", "1", "--eval-limit", "0"));
        CliRunner.AssertUserError(r, "--eval-limit", "out of range (1…1048576)");
        Assert.False(Directory.Exists(dir["m"]) && Directory.EnumerateFileSystemEntries(dir["m"]).Any(), "nothing is written");
    }
}

public class LmLossDefaultTests
{
    private static double InitialEvalLmLoss(string outDir) =>
        File.ReadLines(Path.Combine(outDir, "metrics.jsonl")).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement)
            .First(e => e.GetProperty("kind").GetString() == "eval" && e.GetProperty("step").GetInt32() == 0)
            .GetProperty("eval_lm_loss").GetDouble();

    /// <summary>
    /// #18 item 7: gate training has one LM-loss default, owned by TrainingOptions (prompt and response), whether it is
    /// started from the library or from the CLI; the held-out LM loss before any step shows which tokens it covers.
    /// </summary>
    [Fact]
    public void TheLibraryAndTheCliTrainGatesWithTheSameLmLossDefault()
    {
        Assert.False(new TrainingOptions().ResponseOnlyFor(gates: true));
        Assert.True(new TrainingOptions().ResponseOnlyFor(gates: false));
        Assert.True(new TrainingOptions { ResponseOnly = true }.ResponseOnlyFor(gates: true));

        using var dir = Fixture.TempDir();
        string data = FixtureTasks.Write(dir["data"], perTask: 20);
        GateTrainer.Train(Fixture.Base, FixtureTasks.Adapters, data, dir["api"], new GateTrainingOptions(),
            new TrainingOptions { Steps = 1, BatchSize = 4 }, CPU, ScalarType.Float32);
        string[] cli = FixtureTasks.TrainGateArgs(data, "--steps", "1", "--batch-size", "4");
        Assert.Equal(0, CliRunner.Run([.. cli, "--out", dir["cli"]]).ExitCode);
        Assert.Equal(0, CliRunner.Run([.. cli, "--out", dir["cli-response"], "--response-only"]).ExitCode);

        Assert.Equal(InitialEvalLmLoss(dir["api"]), InitialEvalLmLoss(dir["cli"]), 6);
        Assert.NotEqual(InitialEvalLmLoss(dir["cli"]), InitialEvalLmLoss(dir["cli-response"]), 3);
    }
}
