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
    public void DemoSettingsFromJsonOverrideByNameAndRejectUnknownFields()
    {
        using var dir = Fixture.TempDir();
        File.WriteAllText(dir["ok.json"], """{"GateSteps": 12, "CompositeSizes": [3], "LoraStepsByTask": {"add": 5}}""");
        var s = DemoSettings.Load(dir["ok.json"], DemoSettings.Full);
        Assert.Equal((12, 5, DemoSettings.Full.BaseSteps), (s.GateSteps, s.LoraStepsFor("add"), s.BaseSteps));
        Assert.Equal([3], s.CompositeSizes);
        File.WriteAllText(dir["bad.json"], """{"GateStep": 12}""");
        var e = Assert.Throws<MeteoraException>(() => DemoSettings.Load(dir["bad.json"], DemoSettings.Full));
        Assert.Contains("unknown field 'GateStep'", e.Message);
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
