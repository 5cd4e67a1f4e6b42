using Meteora.Llama;
using Meteora.Lora;
using static TorchSharp.torch;

namespace Meteora.Tests.Lora;

public class LoraParityTests
{
    private static Tensor Prompt(int i) => tensor(Fixture.PromptIds(i).Select(x => (long)x).ToArray(), [1, Fixture.PromptIds(i).Length]);

    [Theory]
    [InlineData("reverse")]
    [InlineData("add")]
    [InlineData("upper")]
    public void SingleAdapterLogitsMatchPeft(string name)
    {
        using var _ = no_grad();
        using var lm = LoraModel.Load(Fixture.Base, Fixture.Adapter(name), CPU, ScalarType.Float32);
        Assert.Equal(14, lm.Projections().OfType<LoraLinear>().Count());
        TensorAssert.Close(Fixture.Tensor($"single.{name}.logits.0"), lm.forward(Prompt(0))[0], 1e-3, name);
    }

    [Fact]
    public void MergedModelGivesTheUnmergedLogits()
    {
        using var dir = Fixture.TempDir();
        LoraMerger.Merge(Fixture.Base, Fixture.Adapter("upper"), dir["merged"]);
        Assert.True(File.Exists(Path.Combine(dir["merged"], "tokenizer.json")));
        using var _ = no_grad();
        using var merged = LlamaLoader.Load(dir["merged"], CPU, ScalarType.Float32);
        using var lora = LoraModel.Load(Fixture.Base, Fixture.Adapter("upper"), CPU, ScalarType.Float32);
        for (int p = 0; p < 3; p++)
            TensorAssert.Close(lora.forward(Prompt(p)), merged.forward(Prompt(p)), 1e-4, $"prompt {p}");
    }

    [Fact]
    public void CliForwardWithAdapterMatchesPeft()
    {
        using var dir = Fixture.TempDir();
        var r = CliRunner.Run("forward", "--model", Fixture.Base, "--adapter", Fixture.Adapter("add"), "--ids", string.Join(",", Fixture.PromptIds(0)), "--out", dir["l.safetensors"]);
        Assert.Equal(0, r.ExitCode);
        using var f = Meteora.IO.SafeTensorsFile.Open(dir["l.safetensors"]);
        TensorAssert.Close(Fixture.Tensor("single.add.logits.0"), f.Load("logits"), 1e-3, "cli");
    }

    [Fact]
    public void RsLoraScalesByTheSquareRootOfTheRank()
    {
        using var dir = Fixture.TempDir();
        string a = AdapterFolder.Copy(dir, "add");
        AdapterFolder.EditConfig(a, c => c["use_rslora"] = true);
        var config = LoraConfig.Load(a);
        Assert.Equal(16 / Math.Sqrt(8), config.Scale, 12);
        using var _ = no_grad();
        using var lm = LoraModel.Load(Fixture.Base, a, CPU, ScalarType.Float32);
        Assert.All(lm.Projections().OfType<LoraLinear>(), p => Assert.Equal(16 / Math.Sqrt(8), p.Scale, 12));
    }

    [Fact]
    public void LayersToTransformAndTargetListRestrictWhereTheAdapterApplies()
    {
        using var dir = Fixture.TempDir();
        string a = AdapterFolder.Copy(dir, "add");
        AdapterFolder.EditConfig(a, c => { c["layers_to_transform"] = 1; c["target_modules"] = new System.Text.Json.Nodes.JsonArray("q_proj", "down_proj"); });
        AdapterFolder.EditWeights(a, w => w.Where(kv => kv.Key.Contains("layers.1.") && (kv.Key.Contains("q_proj") || kv.Key.Contains("down_proj"))));
        using var _ = no_grad();
        using var lm = LoraModel.Load(Fixture.Base, a, CPU, ScalarType.Float32);
        Assert.Equal(["model.layers.1.self_attn.q_proj", "model.layers.1.mlp.down_proj"],
            lm.Projections().OfType<LoraLinear>().Select(p => p.Site.Key).ToArray());
        // A partial adapter changes the logits, but less than nothing would: it differs from both base and full.
        using var full = LoraModel.Load(Fixture.Base, Fixture.Adapter("add"), CPU, ScalarType.Float32);
        var partial = lm.forward(Prompt(0));
        Assert.False(partial.allclose(full.forward(Prompt(0)), 1e-4, 1e-4));
        Assert.False(partial.allclose(Fixture.Tensor("base.logits.0").unsqueeze(0), 1e-4, 1e-4));
    }

    [Fact]
    public void AllLinearTargetsEveryProjection()
    {
        using var dir = Fixture.TempDir();
        string a = AdapterFolder.Copy(dir, "reverse");
        AdapterFolder.EditConfig(a, c => c["target_modules"] = "all-linear");
        using var _ = no_grad();
        using var lm = LoraModel.Load(Fixture.Base, a, CPU, ScalarType.Float32);
        TensorAssert.Close(Fixture.Tensor("single.reverse.logits.0"), lm.forward(Prompt(0))[0], 1e-3, "all-linear");
    }
}
