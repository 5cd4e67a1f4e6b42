using Meteora.Generation;
using Meteora.Llama;
using static TorchSharp.torch;

namespace Meteora.Tests.Llama;

/// <summary>The base model against transformers' float32 logits and greedy continuations.</summary>
public class BaseModelParityTests : IClassFixture<FixtureBaseModel>
{

    private readonly LlamaForCausalLM _lm;
    public BaseModelParityTests(FixtureBaseModel m) => _lm = m.Lm;

    private static Tensor Ids(int[] ids) => tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length]);

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void LogitsMatchTransformers(int prompt)
    {
        using var _ = no_grad();
        var logits = _lm.forward(Ids(Fixture.PromptIds(prompt)))[0];
        TensorAssert.Close(Fixture.Tensor($"base.logits.{prompt}"), logits, 1e-3, $"prompt {prompt}");
    }

    [Fact]
    public void BatchedLeftPaddedForwardMatchesTransformers()
    {
        using var _ = no_grad();
        var batched = Fixture.Reference.GetProperty("batched");
        var rows = batched.GetProperty("input_ids").EnumerateArray().Select(Fixture.Ints).ToArray();
        var mask = batched.GetProperty("attention_mask").EnumerateArray().Select(Fixture.Ints).ToArray();
        int B = rows.Length, T = rows[0].Length;
        var ids = tensor(rows.SelectMany(r => r).Select(i => (long)i).ToArray(), [B, T]);
        var maskT = tensor(mask.SelectMany(r => r).Select(i => (long)i).ToArray(), [B, T]);
        using var cache = new KvCache(_lm.Config, B, T, ScalarType.Float32, CPU);
        cache.SetPadding(maskT);
        var positions = (maskT.cumsum(1) - 1).clamp_min(0);
        var last = _lm.forward(ids, positions, cache, lastOnly: true);          // (B, V)
        Assert.False(last.isnan().any().item<bool>());
        TensorAssert.Close(Fixture.Tensor("base.batched_last_logits"), last, 1e-3, "batched");
    }

    [Fact]
    public void GreedyContinuationsThroughTheKvCacheAreExact()
    {
        foreach (var g in Fixture.Reference.GetProperty("base_greedy").EnumerateArray())
        {
            var prompt = Fixture.PromptIds(g.GetProperty("prompt").GetInt32());
            var expected = Fixture.Ints(g.GetProperty("new_tokens"));
            var got = new TextGenerator(_lm).Generate([prompt], new GenerationOptions { MaxNewTokens = expected.Length })[0];
            Assert.Equal(expected, got);
        }
    }

    [Fact]
    public void BatchedGreedyEqualsOneRowAtATime()
    {
        var prompts = Enumerable.Range(0, 3).Select(Fixture.PromptIds).ToArray();
        var options = new GenerationOptions { MaxNewTokens = 12 };
        var gen = new TextGenerator(_lm);
        var batched = gen.Generate(prompts, options);
        for (int i = 0; i < prompts.Length; i++)
            Assert.Equal(gen.Generate([prompts[i]], options)[0], batched[i]);
    }

    [Fact]
    public void CachedDecodeEqualsFullRecomputation()
    {
        using var _ = no_grad();
        var prompt = Fixture.PromptIds(1);
        var generated = new TextGenerator(_lm).Generate([prompt], new GenerationOptions { MaxNewTokens = 8 })[0];
        var all = prompt.Concat(generated).ToArray();
        var full = _lm.forward(Ids(all))[0];                                      // (T, V) without cache
        var greedy = full.argmax(-1).data<long>().Select(v => (int)v).ToArray();
        // Each generated token is the argmax of the full forward at the position before it.
        for (int i = 0; i < generated.Length; i++) Assert.Equal(generated[i], greedy[prompt.Length - 1 + i]);
    }

    [Fact]
    public void Bfloat16AgreesWithFloat32OnTheLastArgmax()
    {
        using var _ = no_grad();
        using var bf16 = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.BFloat16);
        for (int p = 0; p < 3; p++)
        {
            var ids = Ids(Fixture.PromptIds(p));
            long a = _lm.forward(ids)[0, -1].argmax().item<long>();
            long b = bf16.forward(ids)[0, -1].to(ScalarType.Float32).argmax().item<long>();
            Assert.Equal(a, b);
        }
    }

    [Fact]
    public void StopAtEosEndsTheRowAtTheFirstEosToken()
    {
        // Greedy for prompt 0 produces 127, 282, 60, 111, …: declaring 111 the EOS must stop right after it.
        var prompt = Fixture.PromptIds(0);
        var options = new GenerationOptions { MaxNewTokens = 20, StopAtEos = true, EosIds = [111] };
        Assert.Equal([127, 282, 60, 111], new TextGenerator(_lm).Generate([prompt], options)[0]);
        Assert.Equal(20, new TextGenerator(_lm).Generate([prompt], options with { StopAtEos = false })[0].Length);
    }

    [Fact]
    public void SuppressedTokensAreNeverChosenAndStopWhenEndsTheRow()
    {
        // Greedy for prompt 0 produces 127, 282, 60, 111, …
        var prompt = Fixture.PromptIds(0);
        var suppressed = new TextGenerator(_lm).Generate([prompt], new GenerationOptions { MaxNewTokens = 12, SuppressIds = [282, 60] })[0];
        Assert.Equal(127, suppressed[0]);
        Assert.DoesNotContain(282, suppressed);
        Assert.DoesNotContain(60, suppressed);
        var stopped = new TextGenerator(_lm).Generate([prompt], new GenerationOptions { MaxNewTokens = 12, StopWhen = row => row.Contains(60) })[0];
        Assert.Equal([127, 282, 60], stopped);
    }

    [Fact]
    public void SampledGenerationIsReproducibleBySeed()
    {
        var prompt = Fixture.PromptIds(2);
        var gen = new TextGenerator(_lm);
        GenerationOptions Opt(long seed) => new() { MaxNewTokens = 16, Greedy = false, Temperature = 1.5, TopP = 0.9, Seed = seed };
        var a = gen.Generate([prompt], Opt(7))[0];
        Assert.Equal(a, gen.Generate([prompt], Opt(7))[0]);
        Assert.NotEqual(a, gen.Generate([prompt], Opt(8))[0]);
    }
}
