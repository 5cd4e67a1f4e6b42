using System.Text.Json.Nodes;
using Meteora.Lora;
using Meteora.Moe;

namespace Meteora.Tests.IO;

/// <summary>
/// adapter_config.json and meteora_config.json: every key we read, given a value of the wrong type or range, is a
/// one-line error naming the file and the key (they used to fall back to defaults: lora_alpha [] gave 8, top_k "" 2).
/// config.json's keys are covered by LlamaConfigTests.
/// </summary>
public class ConfigStrictnessTests
{
    private static JsonObject AdapterConfig() =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture.Adapter("add"), "adapter_config.json")))!.AsObject();

    [Theory]
    [InlineData("r", "\"8\"")]
    [InlineData("r", "0")]
    [InlineData("lora_alpha", "null", false)]
    [InlineData("lora_alpha", "[]")]
    [InlineData("lora_alpha", "-16")]
    [InlineData("lora_dropout", "\"0.1\"")]
    [InlineData("lora_dropout", "1.5")]
    [InlineData("use_rslora", "1")]
    [InlineData("use_dora", "\"false\"")]
    [InlineData("fan_in_fan_out", "0")]
    [InlineData("target_modules", "0")]
    [InlineData("target_modules", "[\"q_proj\", 3]")]
    [InlineData("layers_to_transform", "\"0\"")]
    [InlineData("layers_to_transform", "[0, -1]")]
    [InlineData("peft_type", "7")]
    [InlineData("bias", "false")]
    [InlineData("base_model_name_or_path", "[]")]
    public void AdapterConfigKeysAreChecked(string key, string value, bool fails = true)
    {
        var o = AdapterConfig();
        o[key] = JsonNode.Parse(value);
        if (!fails) { Assert.Equal(8, LoraConfig.Parse(o, "adapter_config.json").LoraAlpha); return; }   // null: PEFT's default
        var e = Assert.Throws<MeteoraException>(() => LoraConfig.Parse(o, "adapter_config.json"));
        Assert.StartsWith("adapter_config.json: ", e.Message);
        Assert.Contains($"'{key}'", e.Message);
    }

    [Theory]
    [InlineData("top_k", "\"\"")]
    [InlineData("top_k", "1e30")]
    [InlineData("top_k", "0")]
    [InlineData("temperature", "\"1\"")]
    [InlineData("temperature", "0")]
    [InlineData("version", "\"1\"")]
    [InlineData("format", "1")]
    [InlineData("base_model", "5")]
    [InlineData("target_modules", "\"q_proj\"")]
    [InlineData("target_modules", "[1]")]
    public void MeteoraConfigKeysAreChecked(string key, string value)
    {
        using var dir = Fixture.TempDir();
        var o = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture.Meteora, MeteoraCheckpointConfig.FileName)))!.AsObject();
        o[key] = JsonNode.Parse(value);
        File.WriteAllText(Path.Combine(dir.Path, MeteoraCheckpointConfig.FileName), o.ToJsonString());
        var e = Assert.Throws<MeteoraException>(() => MeteoraCheckpointConfig.Load(dir.Path));
        Assert.Contains(MeteoraCheckpointConfig.FileName + ": ", e.Message);
        Assert.Contains($"'{key}'", e.Message);
    }

    [Theory]
    [InlineData(null, "adapters", "\"add\"")]
    [InlineData(null, "adapters", "{}")]
    [InlineData(0, "name", "3")]
    [InlineData(0, "name", "[\"reverse\"]")]
    [InlineData(1, "path", "5")]
    [InlineData(1, "path", "{}")]
    public void TheAdapterListAndItsEntriesKeysAreChecked(int? entry, string key, string value)
    {
        using var dir = Fixture.TempDir();
        var o = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture.Meteora, MeteoraCheckpointConfig.FileName)))!.AsObject();
        if (entry is { } i) o["adapters"]!.AsArray()[i]!.AsObject()[key] = JsonNode.Parse(value);
        else o[key] = JsonNode.Parse(value);
        File.WriteAllText(Path.Combine(dir.Path, MeteoraCheckpointConfig.FileName), o.ToJsonString());
        var e = Assert.Throws<MeteoraException>(() => MeteoraCheckpointConfig.Load(dir.Path));
        Assert.Contains(MeteoraCheckpointConfig.FileName + ": ", e.Message);
        Assert.Contains($"'{key}'", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void AnAdapterEntryThatIsNotAnObjectIsAnError()
    {
        using var dir = Fixture.TempDir();
        var o = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture.Meteora, MeteoraCheckpointConfig.FileName)))!.AsObject();
        o["adapters"]!.AsArray()[1] = "add";
        File.WriteAllText(Path.Combine(dir.Path, MeteoraCheckpointConfig.FileName), o.ToJsonString());
        var e = Assert.Throws<MeteoraException>(() => MeteoraCheckpointConfig.Load(dir.Path));
        Assert.Contains("adapter 1 must be an object", e.Message);
    }
}
