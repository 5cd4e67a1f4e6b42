using System.Text.Json.Nodes;
using Meteora.IO;
using Meteora.Moe;
using static TorchSharp.torch;

namespace Meteora.Tests.Moe;

public class MeteoraCheckpointTests
{
    private static Tensor Ids(int p) => tensor(Fixture.PromptIds(p).Select(i => (long)i).ToArray(), [1, Fixture.PromptIds(p).Length]);
    private static string[] AdapterDirs => new[] { "reverse", "add", "upper" }.Select(Fixture.Adapter).ToArray();
    private static string Original => Path.Combine(Fixture.Root, "original", "model.safetensors");

    /// <summary>A copy of the fixture checkpoint with absolute adapter paths, editable.</summary>
    private static string CopyCheckpoint(TempDir dir, Action<JsonObject>? editConfig = null)
    {
        string m = dir["meteora"];
        Directory.CreateDirectory(m);
        File.Copy(Path.Combine(Fixture.Meteora, MeteoraCheckpoint.GatesFile), Path.Combine(m, MeteoraCheckpoint.GatesFile));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture.Meteora, MeteoraCheckpointConfig.FileName)))!.AsObject();
        foreach (var a in config["adapters"]!.AsArray()) a!["path"] = MeteoraCheckpointConfig.Resolve(Fixture.Meteora, a["path"]!.GetValue<string>());
        editConfig?.Invoke(config);
        File.WriteAllText(Path.Combine(m, MeteoraCheckpointConfig.FileName), config.ToJsonString());
        return m;
    }

    /// <summary>Rewrites the checkpoint's gates.safetensors through <paramref name="edit"/>.</summary>
    private static void EditGates(string checkpoint, Func<List<KeyValuePair<string, Tensor>>, IEnumerable<KeyValuePair<string, Tensor>>> edit)
    {
        string gates = Path.Combine(checkpoint, MeteoraCheckpoint.GatesFile);
        List<KeyValuePair<string, Tensor>> list;
        using (var f = SafeTensorsFile.Open(gates)) list = f.LoadAll();
        SafeTensorsWriter.Write(gates, edit(list).ToList());
    }

    private static void AssertRefused(string folder, params string[] fragments)
    {
        var e = Assert.Throws<MeteoraException>(() => MeteoraModel.Load(Fixture.Base, folder, CPU, ScalarType.Float32).Dispose());
        Assert.DoesNotContain('\n', e.Message);
        foreach (var f in fragments) Assert.Contains(f, e.Message);
    }

    [Fact]
    public void ConvertOfTheOriginalGivesTheMeteoraLogits()
    {
        using var dir = Fixture.TempDir();
        var report = OriginalCheckpointConverter.Convert(Original, Fixture.Base, AdapterDirs, dir["converted"]);
        Assert.Equal(14, report.Gates);
        Assert.Empty(report.ChangedAdapters);
        Assert.False(File.Exists(Path.Combine(dir["converted"], MeteoraCheckpoint.AdaptersFile)));
        using var _ = no_grad();
        using var m = MeteoraModel.Load(Fixture.Base, dir["converted"], CPU, ScalarType.Float32);
        foreach (var (k, t) in new[] { (1, 1), (2, 1), (2, 15), (3, 1) })
        {
            m.Configure(k, t);
            for (int p = 0; p < 2; p++)
                TensorAssert.Close(Fixture.Tensor($"meteora.k{k}.T{t}.logits.{p}"), m.Forward(Ids(p))[0], 1e-3, $"converted k{k} T{t} p{p}");
        }
    }

    [Fact]
    public void ConvertKeepsAdaptersThatTrainingChanged()
    {
        using var dir = Fixture.TempDir();
        // An original whose stacked weights for adapter 1 ("add") at one projection were trained further.
        List<KeyValuePair<string, Tensor>> tensors;
        using (var f = SafeTensorsFile.Open(Original))
            tensors = f.LoadAll();
        const string key = "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight";
        var b = tensors.Single(t => t.Key == key).Value;
        b.narrow(1, 8, 8).add_(0.25);
        string changed = dir["original.safetensors"];
        SafeTensorsWriter.Write(changed, tensors);

        var report = OriginalCheckpointConverter.Convert(changed, Fixture.Base, AdapterDirs, dir["converted"]);
        Assert.Equal(["add"], report.ChangedAdapters);
        Assert.True(File.Exists(Path.Combine(dir["converted"], MeteoraCheckpoint.AdaptersFile)));
        using var m = MeteoraModel.Load(Fixture.Base, dir["converted"], CPU, ScalarType.Float32);
        var add = m.Adapters.Single(a => a.Name == "add");
        Assert.True(add.Weights["model.layers.1.self_attn.v_proj"].B.allclose(b.narrow(1, 8, 8)));
        using var _ = no_grad();
        Assert.False(m.Forward(Ids(1))[0].allclose(Fixture.Tensor("meteora.k2.T1.logits.1"), 1e-4, 1e-4));
    }

    [Fact]
    public void ConvertRefusesAWrongAdapterCountAndAnExistingOutput()
    {
        using var dir = Fixture.TempDir();
        var e = Assert.Throws<MeteoraException>(() => OriginalCheckpointConverter.Convert(Original, Fixture.Base, AdapterDirs.Take(2).ToList(), dir["x"]));
        Assert.Contains("expected (2, ", e.Message);
        Directory.CreateDirectory(dir["full"]);
        File.WriteAllText(Path.Combine(dir["full"], "keep.txt"), "mine");
        e = Assert.Throws<MeteoraException>(() => OriginalCheckpointConverter.Convert(Original, Fixture.Base, AdapterDirs, dir["full"]));
        Assert.Contains("not empty", e.Message);
        Assert.Equal("mine", File.ReadAllText(Path.Combine(dir["full"], "keep.txt")));
    }

    [Fact]
    public void SelfContainedCheckpointNeedsNoAdapterFolders()
    {
        using var dir = Fixture.TempDir();
        using var _ = no_grad();
        using (var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32))
            m.Save(dir["self"], Fixture.Base, selfContained: true);
        var config = MeteoraCheckpointConfig.Load(dir["self"]);
        Assert.All(config.Adapters, a => Assert.Null(a.Path));
        using var loaded = MeteoraModel.Load(Fixture.Base, dir["self"], CPU, ScalarType.Float32);
        Assert.Equal(["reverse", "add", "upper"], loaded.AdapterNames);
        TensorAssert.Close(Fixture.Tensor("meteora.k2.T1.logits.0"), loaded.Forward(Ids(0))[0], 1e-3, "self-contained");
    }

    [Fact]
    public void SavingAgainWithoutEmbeddedAdaptersDropsThePreviousSavesAndKeepsOtherFiles()
    {
        using var dir = Fixture.TempDir();
        using var _ = no_grad();
        string folder = dir["ckpt"];
        using (var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32))
        {
            m.Save(folder, Fixture.Base, selfContained: true);
            Assert.True(File.Exists(Path.Combine(folder, MeteoraCheckpoint.AdaptersFile)));
            File.WriteAllText(Path.Combine(folder, "metrics.jsonl"), "{\"step\": 1}\n");                // a training log beside it
            m.Save(folder, Fixture.Base, selfContained: false, AdapterDirs);
        }
        // A stale adapters.safetensors would override the adapter folders the new config names.
        Assert.False(File.Exists(Path.Combine(folder, MeteoraCheckpoint.AdaptersFile)));
        Assert.Equal("{\"step\": 1}\n", File.ReadAllText(Path.Combine(folder, "metrics.jsonl")));
        Assert.All(MeteoraCheckpointConfig.Load(folder).Adapters, a => Assert.NotNull(a.Path));
        // And a stray adapters.safetensors beside a config that names folders is never read (this one is not even valid).
        File.WriteAllBytes(Path.Combine(folder, MeteoraCheckpoint.AdaptersFile), [1, 2, 3]);
        using var loaded = MeteoraModel.Load(Fixture.Base, folder, CPU, ScalarType.Float32);
        TensorAssert.Close(Fixture.Tensor("meteora.k2.T1.logits.0"), loaded.Forward(Ids(0))[0], 1e-3, "re-saved");
    }

    [Theory]
    [InlineData("not json", "is not JSON")]
    [InlineData("{\"name\": \"a\"}", "must be a list")]
    [InlineData("[{\"config\": {}}]", "entry 0 needs")]
    [InlineData("[{\"name\": 3, \"config\": {}}]", "entry 0 needs")]
    [InlineData("[{\"name\": \"a\", \"config\": []}]", "entry 0 needs")]
    public void BadEmbeddedAdaptersMetadataIsAOneLineErrorNamingTheFile(string metadata, string cause)
    {
        using var dir = Fixture.TempDir();
        using (no_grad())
        using (var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32))
            m.Save(dir["self"], Fixture.Base, selfContained: true);
        string path = Path.Combine(dir["self"], MeteoraCheckpoint.AdaptersFile);
        List<KeyValuePair<string, Tensor>> tensors;
        using (var f = SafeTensorsFile.Open(path)) tensors = f.LoadAll();
        SafeTensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["adapters"] = metadata });
        var e = Assert.Throws<MeteoraException>(() => MeteoraModel.Load(Fixture.Base, dir["self"], CPU, ScalarType.Float32).Dispose());
        Assert.Contains(path, e.Message);
        Assert.Contains(cause, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void GateWithTheWrongAdapterCount()
    {
        using var dir = Fixture.TempDir();
        string m = CopyCheckpoint(dir, c => c["adapters"]!.AsArray().RemoveAt(2));
        AssertRefused(m, "gates.safetensors", "has 3 rows but the checkpoint lists 2 adapters");
    }

    [Fact]
    public void GateWithTheWrongInFeatures()
    {
        using var dir = Fixture.TempDir();
        string m = CopyCheckpoint(dir);
        EditGates(m, list => list.Select(kv => kv.Key == "model.layers.1.mlp.down_proj.moe_gate.weight" ? new(kv.Key, zeros(3, 64)) : kv));
        AssertRefused(m, "model.layers.1.mlp.down_proj.moe_gate.weight", "takes 176 inputs");
    }

    [Fact]
    public void MissingGate()
    {
        using var dir = Fixture.TempDir();
        string m = CopyCheckpoint(dir);
        EditGates(m, list => list.Where(kv => !kv.Key.StartsWith("model.layers.0.self_attn.k_proj")));
        AssertRefused(m, "missing tensor 'model.layers.0.self_attn.k_proj.moe_gate.weight'");
    }

    [Fact]
    public void EmptyAdapterList()
    {
        using var dir = Fixture.TempDir();
        AssertRefused(CopyCheckpoint(dir, c => c["adapters"] = new JsonArray()), "meteora_config.json", "adapter list is empty");
    }

    [Fact]
    public void MissingAdapterFolder()
    {
        using var dir = Fixture.TempDir();
        AssertRefused(CopyCheckpoint(dir, c => c["adapters"]![1]!["path"] = "/nowhere/add"), "/nowhere/add", "adapter 'add' not found");
    }

    [Fact]
    public void DuplicatedAdapter()
    {
        using var dir = Fixture.TempDir();
        AssertRefused(CopyCheckpoint(dir, c => c["adapters"]![2]!["name"] = "reverse"), "meteora_config.json", "'reverse' is listed twice");
    }

    [Fact]
    public void TopKAboveTheAdapterCount()
    {
        using var dir = Fixture.TempDir();
        AssertRefused(CopyCheckpoint(dir, c => c["top_k"] = 4), "meteora_config.json", "top_k = 4");
        var r = CliRunner.Run("forward", "--model", Fixture.Base, "--meteora", Fixture.Meteora, "--top-k", "4", "--ids", "0,1", "--out", dir["l.safetensors"]);
        CliRunner.AssertUserError(r, "--top-k", "between 1 and the 3 adapters");
    }

    [Fact]
    public void InspectDescribesTheCheckpoint()
    {
        var r = CliRunner.Run("inspect", Fixture.Meteora);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("2 layers, hidden 64", r.Stdout);
        Assert.Contains("reverse", r.Stdout);
        Assert.Contains("r=8 alpha=16 scale=2", r.Stdout);
        Assert.Contains("gates     14 projections", r.Stdout);
        Assert.Contains("adapters 56,064, gates 3,360", r.Stdout);
    }

    [Fact]
    public void TraceOptionWritesTheReferenceRouting()
    {
        using var dir = Fixture.TempDir();
        var r = CliRunner.Run("forward", "--model", Fixture.Base, "--meteora", Fixture.Meteora, "--top-k", "2", "--strategy", "segment",
            "--ids", string.Join(",", Fixture.PromptIds(0)), "--out", dir["l.safetensors"], "--trace", dir["trace.json"]);
        Assert.Equal(0, r.ExitCode);
        var trace = JsonNode.Parse(File.ReadAllText(dir["trace.json"]))!.AsObject();
        var expected = JsonNode.Parse(Fixture.Reference.GetProperty("routing_trace_prompt0_top2").GetRawText())!.AsObject();
        Assert.True(JsonNode.DeepEquals(expected, trace));
    }
}
