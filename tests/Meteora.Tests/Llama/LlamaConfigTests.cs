using System.Text.Json.Nodes;
using Meteora.Llama;
using static TorchSharp.torch;

namespace Meteora.Tests.Llama;

public class LlamaConfigTests
{
    private static LlamaConfig Parse(string json) => LlamaConfig.Parse(JsonNode.Parse(json)!.AsObject(), "config.json");

    private const string Sizes = "\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":8,\"vocab_size\":100";

    [Fact]
    public void TransformersFiveFormFromTheFixture()
    {
        var c = LlamaConfig.Load(Fixture.Base);
        Assert.Equal(500000.0, c.Rope.Theta);
        Assert.Equal("default", c.Rope.RopeType);
        Assert.Equal((64, 4, 2, 16, 384), (c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.VocabSize));
        Assert.Equal(1e-5, c.RmsNormEps);
        Assert.False(c.TieWordEmbeddings);
        Assert.Equal([1], c.EosTokenIds);
    }

    [Fact]
    public void HubFormWithLlama3ScalingAndDefaults()
    {
        var c = Parse("{" + Sizes + ",\"rope_theta\":500000.0,\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192},\"eos_token_id\":[5,6],\"tie_word_embeddings\":true}");
        Assert.Equal(new RopeParameters(500000.0, "llama3", 8.0, 1.0, 4.0, 8192), c.Rope);
        Assert.Equal(8, c.NumKeyValueHeads);      // defaults to the query heads
        Assert.Equal(8, c.HeadDim);               // hidden / heads
        Assert.Equal([5, 6], c.EosTokenIds);
        Assert.True(c.TieWordEmbeddings);
    }

    [Fact]
    public void ExplicitHeadDimWins()
    {
        var c = Parse("{" + Sizes + ",\"head_dim\":32,\"num_key_value_heads\":2}");
        Assert.Equal(32, c.HeadDim);
        Assert.Equal(4, c.KvGroups);
    }

    [Theory]
    [InlineData("\"model_type\":\"mistral\"", "unsupported model_type 'mistral'")]
    [InlineData("\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}", "unsupported rope_type 'yarn'")]
    [InlineData("\"num_key_value_heads\":3", "not a multiple of num_key_value_heads")]
    public void RejectedConfigsSayWhy(string change, string cause)
    {
        string json = "{" + Sizes.Replace("\"model_type\":\"llama\",", "") + "," + (change.Contains("model_type") ? change : "\"model_type\":\"llama\"," + change) + "}";
        var e = Assert.Throws<MeteoraException>(() => Parse(json));
        Assert.StartsWith("config.json: ", e.Message);
        Assert.Contains(cause, e.Message);
    }

    /// <summary>
    /// Every key config.json is read for, with a value of the wrong type or range: a one-line error naming the key
    /// (these used to fall back to the default silently: rope theta lost, eps 1e-6, the derived head_dim).
    /// </summary>
    [Theory]
    [InlineData("hidden_size", "\"64\"")]
    [InlineData("hidden_size", "64.5")]
    [InlineData("intermediate_size", "0")]
    [InlineData("num_hidden_layers", "true")]
    [InlineData("num_attention_heads", "[8]")]
    [InlineData("vocab_size", "-1")]
    [InlineData("num_key_value_heads", "\"2\"")]
    [InlineData("head_dim", "3.5")]
    [InlineData("rms_norm_eps", "\"\"")]
    [InlineData("rms_norm_eps", "0")]
    [InlineData("max_position_embeddings", "-1")]
    [InlineData("tie_word_embeddings", "3.5")]
    [InlineData("attention_bias", "\"no\"")]
    [InlineData("mlp_bias", "0")]
    [InlineData("hidden_act", "1")]
    [InlineData("model_type", "[]")]
    [InlineData("rope_parameters", "true")]
    [InlineData("rope_scaling", "\"llama3\"")]
    [InlineData("rope_theta", "\"500000\"")]
    [InlineData("rope_theta", "-5")]
    [InlineData("bos_token_id", "\"0\"")]
    [InlineData("eos_token_id", "[1, \"2\"]")]
    [InlineData("eos_token_id", "-3")]
    [InlineData("pad_token_id", "1.5")]
    [InlineData("torch_dtype", "16")]
    public void AKeyWithAWrongTypeOrRangeIsAnErrorNamingIt(string key, string value)
    {
        var root = JsonNode.Parse("{" + Sizes + "}")!.AsObject();
        root[key] = JsonNode.Parse(value);
        var e = Assert.Throws<MeteoraException>(() => LlamaConfig.Parse(root, "config.json"));
        Assert.StartsWith("config.json: ", e.Message);
        Assert.Contains($"'{key}'", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Theory]
    [InlineData("rope_parameters", "{\"rope_theta\": \"x\"}", "rope_theta")]
    [InlineData("rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": \"8\"}", "factor")]
    [InlineData("rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8, \"original_max_position_embeddings\": 0}", "original_max_position_embeddings")]
    public void NestedRopeKeysAreCheckedToo(string key, string value, string nested)
    {
        var root = JsonNode.Parse("{" + Sizes + "}")!.AsObject();
        root[key] = JsonNode.Parse(value);
        var e = Assert.Throws<MeteoraException>(() => LlamaConfig.Parse(root, "config.json"));
        Assert.Contains($"'{nested}'", e.Message);
    }

    [Fact]
    public void NullAndAbsentKeysKeepTheirDefaults()
    {
        // Hugging Face writes null for several keys (pad_token_id, rope_scaling, head_dim …): null means "not set".
        var c = Parse("{" + Sizes + ",\"pad_token_id\":null,\"rope_scaling\":null,\"head_dim\":null,\"bos_token_id\":null,\"rms_norm_eps\":null,\"torch_dtype\":null}");
        Assert.Null(c.PadTokenId);
        Assert.Equal("default", c.Rope.RopeType);
        Assert.Equal(8, c.HeadDim);                // hidden / heads
        Assert.Equal(1e-6, c.RmsNormEps);
        Assert.Equal(2048, c.MaxPositionEmbeddings);
    }

    [Fact]
    public void Llama3InverseFrequenciesFollowTheScalingFormula()
    {
        var c = Parse("{" + Sizes + ",\"head_dim\":64,\"rope_theta\":500000.0,\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}}");
        using var rope = new RotaryEmbedding(c, CPU);
        var got = rope.InverseFrequencies.data<float>().ToArray();
        // The Llama 3.1 rule, written out in double precision: low frequencies divided by 8, high kept,
        // the band between interpolated by the wavelength ratio.
        for (int i = 0; i < 32; i++)
        {
            double inv = 1.0 / Math.Pow(500000.0, 2.0 * i / 64);
            double wavelen = 2 * Math.PI / inv;
            double lowWavelen = 8192 / 1.0, highWavelen = 8192 / 4.0;
            double expected = wavelen < highWavelen ? inv
                : wavelen > lowWavelen ? inv / 8
                : (1 - (8192 / wavelen - 1) / 3) * inv / 8 + (8192 / wavelen - 1) / 3 * inv;
            Assert.True(Math.Abs(got[i] - expected) <= 1e-6 * expected + 1e-12, $"inv_freq[{i}] = {got[i]}, expected {expected}");
        }
        // Both ends of the spectrum are really in the test.
        Assert.True(got[0] == 1.0f && got[31] < 1.0 / Math.Pow(500000.0, 62.0 / 64) / 7.9);
    }
}
