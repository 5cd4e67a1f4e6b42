using System.Text.Json.Nodes;
using Meteora.Llama;
using Meteora.Lora;
using static TorchSharp.torch;

namespace Meteora.Tests.Lora;

/// <summary>Every refused adapter: one line naming the file and the cause.</summary>
public class LoraAdapterErrorTests
{
    private static readonly LlamaConfig Base = LlamaConfig.Load(Fixture.Base);

    private static void AssertRefused(string folder, params string[] fragments)
    {
        var e = Assert.Throws<MeteoraException>(() => LoraAdapter.Load(folder, Base).Dispose());
        Assert.DoesNotContain('\n', e.Message);
        foreach (var f in fragments) Assert.Contains(f, e.Message);
    }

    private static string Edited(TempDir dir, Action<JsonObject> edit)
    {
        string a = AdapterFolder.Copy(dir, "add");
        AdapterFolder.EditConfig(a, edit);
        return a;
    }

    [Fact]
    public void BiasOtherThanNone()
    {
        using var dir = Fixture.TempDir();
        AssertRefused(Edited(dir, c => c["bias"] = "lora_only"), "adapter_config.json", "bias 'lora_only'");
    }

    [Fact]
    public void Dora()
    {
        using var dir = Fixture.TempDir();
        AssertRefused(Edited(dir, c => c["use_dora"] = true), "adapter_config.json", "DoRA");
    }

    [Fact]
    public void BinOnlyFolder()
    {
        using var dir = Fixture.TempDir();
        string a = AdapterFolder.Copy(dir, "add");
        File.Move(Path.Combine(a, "adapter_model.safetensors"), Path.Combine(a, "adapter_model.bin"));
        AssertRefused(a, a, "adapter_model.bin", "safetensors");
    }

    [Fact]
    public void MissingConfig()
    {
        using var dir = Fixture.TempDir();
        string a = AdapterFolder.Copy(dir, "add");
        File.Delete(Path.Combine(a, "adapter_config.json"));
        AssertRefused(a, "adapter_config.json", "file not found");
    }

    [Fact]
    public void MalformedConfigJson()
    {
        using var dir = Fixture.TempDir();
        string a = AdapterFolder.Copy(dir, "add");
        File.WriteAllText(Path.Combine(a, "adapter_config.json"), "{\"r\": 8,");
        AssertRefused(a, "adapter_config.json", "invalid JSON");
    }

    [Fact]
    public void TargetThatIsNotAProjection()
    {
        using var dir = Fixture.TempDir();
        AssertRefused(Edited(dir, c => c["target_modules"] = new JsonArray("q_proj", "lm_head")), "adapter_config.json", "'lm_head' is not a LLaMA projection");
    }

    [Fact]
    public void RankThatDisagreesWithTheConfig()
    {
        using var dir = Fixture.TempDir();
        AssertRefused(Edited(dir, c => c["r"] = 4), "adapter_model.safetensors", "has rank 8 but adapter_config.json says r = 4");
    }

    [Fact]
    public void AdapterMadeForAnotherBaseNamesTheFirstMismatchingTensor()
    {
        using var dir = Fixture.TempDir();
        string a = AdapterFolder.Copy(dir, "add");
        // Pretend the adapter was trained on a model with hidden size 96: A of q_proj is (8, 96).
        AdapterFolder.EditWeights(a, w => w.Select(kv => kv.Key == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
            ? new KeyValuePair<string, Tensor>(kv.Key, zeros(8, 96)) : kv));
        AssertRefused(a, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "has shape (8, 96)", "another base");
    }

    [Fact]
    public void LayerBeyondTheBase()
    {
        using var dir = Fixture.TempDir();
        string a = AdapterFolder.Copy(dir, "add");
        AdapterFolder.EditWeights(a, w => w.Append(new("base_model.model.model.layers.5.self_attn.q_proj.lora_A.weight", zeros(8, 64))));
        AssertRefused(a, "layers.5", "layer 5 but the base has 2 layers");
    }

    [Fact]
    public void MissingTensorForATargetedProjection()
    {
        using var dir = Fixture.TempDir();
        string a = AdapterFolder.Copy(dir, "add");
        AdapterFolder.EditWeights(a, w => w.Where(kv => !kv.Key.Contains("layers.1.mlp.up_proj.lora_B")));
        AssertRefused(a, "missing tensor 'base_model.model.model.layers.1.mlp.up_proj.lora_B.weight'");
    }

    [Fact]
    public void ForeignKey()
    {
        using var dir = Fixture.TempDir();
        string a = AdapterFolder.Copy(dir, "add");
        AdapterFolder.EditWeights(a, w => w.Append(new("base_model.model.lm_head.weight", zeros(3))));
        AssertRefused(a, "'base_model.model.lm_head.weight' is not a LoRA projection weight");
    }

    [Fact]
    public void CliReportsAdapterErrorsOnOneLine()
    {
        using var dir = Fixture.TempDir();
        var r = CliRunner.Run("forward", "--model", Fixture.Base, "--adapter", dir["nope"], "--ids", "0,1", "--out", dir["x.safetensors"]);
        CliRunner.AssertUserError(r, dir["nope"], "adapter folder not found");
    }
}
