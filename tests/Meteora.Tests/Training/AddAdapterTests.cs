using Meteora.IO;
using Meteora.Moe;
using Meteora.Training;
using static TorchSharp.torch;

namespace Meteora.Tests.Training;

public class AddAdapterTests
{
    private static readonly TrainingOptions Quick = new() { Steps = 150, BatchSize = 16, LearningRate = 1e-2, WeightDecay = 0.01, ClipNorm = 0.3, Seed = 42 };

    /// <summary>Gates trained on reverse and upper, then grown by add: the old rows stay as trained (frozen), the new task routes right.</summary>
    [Fact]
    public void AddingAnAdapterTrainsItsRowsAndKeepsTheOldOnes()
    {
        using var dir = Fixture.TempDir();
        var (data, old) = OldGates(dir, Quick.Steps!.Value);
        Assert.True(old.FinalEval["eval_gate_acc"] > 0.9);

        var r = AdapterAddition.Add(Fixture.Base, dir["old"], ("add", Fixture.Adapter("add")), data, dir["grown"],
            new AdapterAdditionOptions { ReplayFraction = 1.0 }, Quick with { Steps = 100 }, CPU, ScalarType.Float32);
        Assert.Equal(TrainingOutcome.Completed, r.Outcome);
        Assert.Equal(2, r.NewIndex);
        Assert.Equal(["reverse", "upper"], r.Replayed.Keys.Order());
        Assert.Equal(r.NewExamples, r.Replayed.Values.Sum());                            // replay fraction 1: as many old as new
        Assert.True(r.FinalEval["eval_gate_acc"] > 0.9, $"gate accuracy after adding: {r.FinalEval["eval_gate_acc"]}");

        var config = MeteoraCheckpointConfig.Load(dir["grown"]);
        Assert.Equal(["reverse", "upper", "add"], config.Adapters.Select(a => a.Name));
        using var before = SafeTensorsFile.Open(Path.Combine(dir["old"], MeteoraCheckpoint.GatesFile));
        using var after = SafeTensorsFile.Open(Path.Combine(dir["grown"], MeteoraCheckpoint.GatesFile));
        foreach (var key in before.Entries.Keys)
        {
            using var o = before.Load(key); using var n = after.Load(key);
            Assert.Equal([3, o.shape[1]], n.shape);
            Assert.True(n.narrow(0, 0, 2).allclose(o, 0, 0), $"{key}: the frozen old rows changed");
        }
        using var m = MeteoraModel.Load(Fixture.Base, dir["grown"], CPU, ScalarType.Float32);
        Assert.Equal(3, m.AdapterNames.Count);

        // With a learning rate for them, the old rows move.
        var moved = AdapterAddition.Add(Fixture.Base, dir["old"], ("add", Fixture.Adapter("add")), data, dir["moved"],
            new AdapterAdditionOptions { OldRowsLr = 1e-3 }, Quick with { Steps = 20 }, CPU, ScalarType.Float32);
        using var movedGates = SafeTensorsFile.Open(Path.Combine(dir["moved"], MeteoraCheckpoint.GatesFile));
        var someKey = before.Entries.Keys.First();
        using (var o = before.Load(someKey)) using (var n = movedGates.Load(someKey))
            Assert.False(n.narrow(0, 0, 2).allclose(o, 0, 0), "old rows with --old-rows-lr > 0 should change");
    }

    /// <summary>--restate reaches add-adapter: a share of its rows (new and replayed tasks) become restated lists, and it says how many.</summary>
    [Fact]
    public void RestatedListsMixTheNewTaskWithTheReplayedOnes()
    {
        using var dir = Fixture.TempDir();
        var (data, _) = OldGates(dir, steps: 5);

        var plain = new RecordingProgress();
        AdapterAddition.Add(Fixture.Base, dir["old"], ("add", Fixture.Adapter("add")), data, dir["plain"], new AdapterAdditionOptions(),
            Quick with { Steps = 2 }, CPU, ScalarType.Float32, plain);
        Assert.DoesNotContain(plain.Messages, m => m.StartsWith("restated lists"));

        var restate = new RecordingProgress();
        var r = AdapterAddition.Add(Fixture.Base, dir["old"], ("add", Fixture.Adapter("add")), data, dir["restated"], new AdapterAdditionOptions(),
            Quick with { Steps = 2, RestateShare = 0.5, MaxSeqLen = 256 }, CPU, ScalarType.Float32, restate);
        Assert.Equal(TrainingOutcome.Completed, r.Outcome);
        var line = Assert.Single(restate.Messages, m => m.StartsWith("restated lists"));
        var counts = System.Text.RegularExpressions.Regex.Match(line, @"restated lists: (\d+) of (\d+) training rows");
        Assert.True(counts.Success, line);
        int n = int.Parse(counts.Groups[1].Value), total = int.Parse(counts.Groups[2].Value);
        Assert.Equal(r.NewExamples + r.Replayed.Values.Sum(), total);
        Assert.InRange(n, total / 4, 3 * total / 4);                                      // about half at share 0.5
    }

    [Fact]
    public void InconsistentAdditionsAreRefused()
    {
        using var dir = Fixture.TempDir();
        string data = FixtureTasks.Write(dir["data"], perTask: 20);
        var options = Quick with { Steps = 1 };
        AssertRefused(() => AdapterAddition.Add(Fixture.Base, Fixture.Meteora, ("add", Fixture.Adapter("add")), data, dir["a"], new(), options, CPU, ScalarType.Float32),
            "already in the checkpoint");
        // A data folder with a task that has no adapter anywhere.
        Directory.CreateDirectory(Path.Combine(data, "stranger"));
        File.WriteAllText(Path.Combine(data, "stranger", "train.jsonl"), "{\"prompt\": \"x\", \"response\": \"y\"}\n");
        using (var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32)) m.Save(dir["two"], Fixture.Base, false, [Fixture.Adapter("reverse"), Fixture.Adapter("add"), Fixture.Adapter("upper")]);
        string removed = dir["without-add"];
        AdapterRemoval.Remove(dir["two"], "add", removed);
        AssertRefused(() => AdapterAddition.Add(Fixture.Base, removed, ("add", Fixture.Adapter("add")), data, dir["b"], new(), options, CPU, ScalarType.Float32),
            "stranger");
        Directory.Delete(Path.Combine(data, "stranger"), true);
        // No task folder for the new adapter.
        AssertRefused(() => AdapterAddition.Add(Fixture.Base, removed, ("sum", Fixture.Adapter("add")), data, dir["c"], new(), options, CPU, ScalarType.Float32),
            "no task folder 'sum'");
        // An adapter made for another base.
        string other = AdapterFolder.Copy(dir, "add");
        AdapterFolder.EditWeights(other, w => w.Select(kv => kv.Key == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
            ? new KeyValuePair<string, Tensor>(kv.Key, zeros(8, 96)) : kv));
        AssertRefused(() => AdapterAddition.Add(Fixture.Base, removed, ("add", other), data, dir["d"], new(), options, CPU, ScalarType.Float32),
            "another base");
        AssertRefused(() => AdapterAddition.Add(Fixture.Base, removed, ("add", Fixture.Adapter("add")), data, dir["e"], new() { OldRowsLr = 1 }, options, CPU, ScalarType.Float32),
            "--old-rows-lr");
    }

    private static void AssertRefused(Action action, string fragment)
    {
        var e = Assert.Throws<MeteoraException>(action);
        Assert.Contains(fragment, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    /// <summary>The fixture's tasks in DIR/data and gates trained on reverse and upper alone in DIR/old.</summary>
    private static (string Data, GateTrainingResult Old) OldGates(TempDir dir, int steps)
    {
        string data = FixtureTasks.Write(dir["data"]);
        string oldData = dir["old-data"];
        foreach (var t in new[] { "reverse", "upper" }) CopyTask(data, oldData, t);
        var old = GateTrainer.Train(Fixture.Base, [("reverse", Fixture.Adapter("reverse")), ("upper", Fixture.Adapter("upper"))], oldData, dir["old"],
            new GateTrainingOptions(), Quick with { Steps = steps }, CPU, ScalarType.Float32);
        return (data, old);
    }

    private static void CopyTask(string from, string to, string task)
    {
        Directory.CreateDirectory(Path.Combine(to, task));
        File.Copy(Path.Combine(from, task, "train.jsonl"), Path.Combine(to, task, "train.jsonl"));
    }
}
