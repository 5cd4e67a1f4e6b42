using Meteora.Demo;
using Meteora.IO;
using Meteora.Llama;
using Meteora.Lora;
using Meteora.Evaluation;
using static TorchSharp.torch;

namespace Meteora.Tests.Demo;

/// <summary>The demo models shipped in models/meteora-demo: sealed, complete, and what the demo settings describe.</summary>
public class ShippedModelsTests
{
    private static string Shipped => Path.Combine(Fixture.RepoRoot, "models", "meteora-demo");

    [Fact]
    public void EveryShippedFolderIsSealedAndVerifies()
    {
        var folders = TaskSuite.All.Select(t => Path.Combine(Shipped, "adapters", t.Name)).Append(Path.Combine(Shipped, "lora-b")).Prepend(Path.Combine(Shipped, "base"));
        foreach (var folder in folders)
        {
            Assert.True(File.Exists(Path.Combine(folder, ArtifactCard.FileName)), $"{folder} has no seal");
            ArtifactCard.VerifyIfPresent(folder);
        }
        long bytes = Directory.EnumerateFiles(Shipped, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        Assert.True(bytes <= 40_000_000, $"the shipped models take {bytes:N0} bytes (at most 40 MB)");
    }

    [Fact]
    public void TheShippedBaseIsTheArchitectureTheDemoRebuildsAndLoadsWithEveryAdapter()
    {
        var config = LlamaConfig.Load(Path.Combine(Shipped, "base"));
        var expected = DemoRunner.BaseConfig(DemoSettings.Full);
        Assert.Equal((expected.NumHiddenLayers, expected.HiddenSize, expected.IntermediateSize, expected.NumAttentionHeads, expected.NumKeyValueHeads),
            (config.NumHiddenLayers, config.HiddenSize, config.IntermediateSize, config.NumAttentionHeads, config.NumKeyValueHeads));
        using var lm = LlamaLoader.Load(Path.Combine(Shipped, "base"), CPU, ScalarType.Float32);
        foreach (var t in TaskSuite.All)
            using (LoraAdapter.Load(Path.Combine(Shipped, "adapters", t.Name), config)) { }
        string card = File.ReadAllText(Path.Combine(Shipped, "base", "README.md"));
        Assert.Contains("copy accuracy", card);
        Assert.Contains("SHA-256", card);
    }

    [Fact]
    public void LoraEpochsGiveEachTaskItsOwnStepCountUpToLoraSteps()
    {
        var steps = DemoSettings.Full with { LoraEpochs = 0, LoraSteps = 120, LoraBatch = 32 };
        Assert.Equal((120, 120), (steps.LoraStepsFor("reverse", 500), steps.LoraStepsFor("subtract", 105)));   // off: one count
        var epochs = steps with { LoraEpochs = 12, LoraSteps = 150, LoraMinSteps = 1, LoraStepsByTask = new Dictionary<string, int> { ["count"] = 7 } };
        // ⌈12 × 105 / 32⌉ = 40, ⌈12 × 150 / 32⌉ = 57; 12 × 500 / 32 = 187.5 is capped at LoraSteps; a task named explicitly wins.
        Assert.Equal((40, 57, 150, 7), (epochs.LoraStepsFor("subtract", 105), epochs.LoraStepsFor("add", 150), epochs.LoraStepsFor("reverse", 500), epochs.LoraStepsFor("count", 58)));
        Assert.Equal(1, epochs.LoraStepsFor("tiny", 1));
        var floor = epochs with { LoraMinSteps = 50 };   // a floor for small tasks: 40 → 50, 57 stays
        Assert.Equal((50, 57, 150), (floor.LoraStepsFor("subtract", 105), floor.LoraStepsFor("add", 150), floor.LoraStepsFor("reverse", 500)));
        Assert.Equal(150, (floor with { LoraMinSteps = 400 }).LoraStepsFor("subtract", 105));   // the cap wins over a larger floor
        Assert.NotEqual(steps.BuildRecipe(), epochs.BuildRecipe());   // a changed recipe is a different build
        // The demo's recipe (docs/RESULTS.md): 200 steps for a task of 500 examples, 120 for the small ones.
        var full = DemoSettings.Full;
        Assert.Equal((200, 120, 120, 120), (full.LoraStepsFor("reverse", 500), full.LoraStepsFor("add", 150), full.LoraStepsFor("subtract", 105), full.LoraStepsFor("count", 58)));
    }

    [Fact]
    public void DemoSettingsFromJsonOverrideByNameAndRejectUnknownFields()
    {
        using var dir = Fixture.TempDir();
        File.WriteAllText(dir["ok.json"], """{"GateSteps": 12, "CompositeSizes": [3], "LoraStepsByTask": {"add": 5}}""");
        var s = DemoSettings.Load(dir["ok.json"], DemoSettings.Full);
        Assert.Equal((12, 5, DemoSettings.Full.BaseSteps), (s.GateSteps, s.LoraStepsFor("add", 150), s.BaseSteps));
        Assert.Equal([3], s.CompositeSizes);
        File.WriteAllText(dir["bad.json"], """{"GateStep": 12}""");
        var e = Assert.Throws<MeteoraException>(() => DemoSettings.Load(dir["bad.json"], DemoSettings.Full));
        Assert.Contains("unknown field 'GateStep'", e.Message);
        File.WriteAllText(dir["epochs.json"], """{"LoraEpochs": -2}""");
        Assert.Contains("field 'LoraEpochs' is -2", Assert.Throws<MeteoraException>(() => DemoSettings.Load(dir["epochs.json"], DemoSettings.Full)).Message);
        File.WriteAllText(dir["steps.json"], """{"LoraSteps": 0}""");   // the cap of the epochs' step count: Math.Clamp would throw
        Assert.Contains("field 'LoraSteps' is 0", Assert.Throws<MeteoraException>(() => DemoSettings.Load(dir["steps.json"], DemoSettings.Full)).Message);
        File.WriteAllText(dir["base.json"], """{"BaseLayers": 12}""");
        CliRunner.AssertUserError(CliRunner.Run("demo", "--dir", dir["w"], "--settings", dir["base.json"]), "only apply with --from-scratch");
        File.WriteAllText(dir["null.json"], """{"CompositeSizes": null}""");
        Assert.Contains("'CompositeSizes' is null", Assert.Throws<MeteoraException>(() => DemoSettings.Load(dir["null.json"], DemoSettings.Full)).Message);
        File.WriteAllText(dir["type.json"], """{"GateSteps": "many"}""");
        e = Assert.Throws<MeteoraException>(() => DemoSettings.Load(dir["type.json"], DemoSettings.Full));
        Assert.Contains("type.json: invalid demo settings", e.Message);
    }

    [Fact]
    public void DemoRefusesMissingOrDamagedShippedModelsInOneLine()
    {
        using var dir = Fixture.TempDir();
        var r = CliRunner.Run("demo", "--dir", dir["work"], "--shipped", dir["nowhere"]);
        CliRunner.AssertUserError(r, "nowhere", "shipped demo models are missing", "demo --from-scratch");
        // A copy of the shipped base with one byte changed in a shard.
        string copy = dir["shipped"];
        foreach (var f in Directory.EnumerateFiles(Shipped, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(copy, Path.GetRelativePath(Shipped, f));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(f, target);
        }
        string shard = Directory.GetFiles(Path.Combine(copy, "base"), "model-*.safetensors")[0];
        using (var fs = new FileStream(shard, FileMode.Open)) { fs.Seek(-1, SeekOrigin.End); int b = fs.ReadByte(); fs.Seek(-1, SeekOrigin.End); fs.WriteByte((byte)(b ^ 1)); }
        r = CliRunner.Run("demo", "--dir", dir["work"], "--shipped", copy);
        CliRunner.AssertUserError(r, Path.GetFileName(shard), "SHA-256 mismatch", "demo --from-scratch --device cuda");
    }
}
