using Meteora.Generation;
using Meteora.Lora;
using Meteora.Serving;
using static TorchSharp.torch;

namespace Meteora.Tests.Serving;

public class ServingEngineTests
{
    private static readonly SamplingSettings Greedy = new() { Temperature = 0, IgnoreEos = true };

    /// <summary>Reads a request's events to the end: its token ids, released text and finish event.</summary>
    public static async Task<(List<int> Ids, string Text, FinishEvent Finish, List<TokenEvent> Tokens)> Collect(EngineRequest r)
    {
        var tokens = new List<TokenEvent>();
        var text = new System.Text.StringBuilder();
        await foreach (var e in r.Events.ReadAllAsync())
        {
            if (e is TokenEvent t) { tokens.Add(t); text.Append(t.Text); }
            else if (e is FinishEvent f) { text.Append(f.Text); return (tokens.Select(x => x.Id).ToList(), text.ToString(), f, tokens); }
        }
        throw new InvalidOperationException("stream ended without a finish event");
    }

    private static int[] Expected(string name, int prompt) => Fixture.Ints(Fixture.Reference.GetProperty(name)[prompt].GetProperty("new_tokens"));

    [Fact]
    public async Task ConcurrentRequestsWithMixedRoutingEachGiveTheirReferenceContinuation()
    {
        using var model = ServingModels.TinyMeteora();
        // Two rows, prefill chunks of 3 tokens: requests wait for rows, prompts prefill in several chunks between decode steps.
        using var engine = new ServingEngine(model, new EngineOptions { MaxBatch = 2, PrefillChunk = 3, MaxContext = 64 });
        int add = model.AdapterNames.ToList().IndexOf("add");
        using var lora = LoraModel.Load(Fixture.Base, Fixture.Adapter("add"), CPU, ScalarType.Float32);
        var loraTokens = new TextGenerator(lora).Generate([Fixture.PromptIds(1)], new GenerationOptions { MaxNewTokens = 12 })[0];

        var requests = new[]
        {
            engine.Submit("a", Fixture.PromptIds(0), Greedy with { MaxTokens = 16 }, new RouteChoice(RouteMode.Gates, TopK: 2)),
            engine.Submit("b", Fixture.PromptIds(1), Greedy with { MaxTokens = 20 }, RouteChoice.Base),
            engine.Submit("c", Fixture.PromptIds(1), Greedy with { MaxTokens = 12 }, new RouteChoice(RouteMode.Adapter, add)),
            engine.Submit("d", Fixture.PromptIds(1), Greedy with { MaxTokens = 16 }, new RouteChoice(RouteMode.Gates, TopK: 2)),
        };
        var results = await Task.WhenAll(requests.Select(Collect));
        Assert.Equal(Expected("meteora_greedy_top2_T1", 0), results[0].Ids);
        Assert.Equal(Expected("base_greedy", 1), results[1].Ids);
        Assert.Equal(loraTokens, results[2].Ids);
        Assert.Equal(Expected("meteora_greedy_top2_T1", 1), results[3].Ids);
        Assert.All(results, r => Assert.Equal("length", r.Finish.Reason));
        Assert.Equal(16, results[0].Finish.CompletionTokens);
        Assert.Equal(Fixture.PromptIds(0).Length, results[0].Finish.PromptTokens);
        Assert.Equal(0, engine.Running);
        Assert.True(engine.SelectionCounts().Cast<long>().Sum() > 0, "gate-routed tokens are counted per layer group");
    }

    [Fact]
    public async Task SeededSamplingGivesTheSameTokensAloneAndInABatch()
    {
        using var model = ServingModels.TinyMeteora();
        using var engine = new ServingEngine(model, new EngineOptions { MaxBatch = 4, MaxContext = 64 });
        var sampled = new SamplingSettings { Temperature = 0.9, TopP = 0.8, Seed = 42, MaxTokens = 10, IgnoreEos = true };
        var alone = await Collect(engine.Submit("x", Fixture.PromptIds(0), sampled, RouteChoice.Base));
        var batch = new[]
        {
            engine.Submit("y", Fixture.PromptIds(0), sampled, RouteChoice.Base),
            engine.Submit("z", Fixture.PromptIds(1), sampled with { Seed = 7 }, new RouteChoice(RouteMode.Gates, TopK: 1)),
        };
        var together = await Task.WhenAll(batch.Select(Collect));
        Assert.Equal(alone.Ids, together[0].Ids);
        var otherSeed = await Collect(engine.Submit("w", Fixture.PromptIds(0), sampled with { Seed = 43 }, RouteChoice.Base));
        Assert.NotEqual(alone.Ids, otherSeed.Ids);
    }

    [Fact]
    public async Task StopStringsEndTheTextBeforeThemAndLogprobsComeWithTokens()
    {
        using var model = ServingModels.TinyMeteora();
        using var engine = new ServingEngine(model, new EngineOptions { MaxBatch = 2, MaxContext = 64 });
        var free = await Collect(engine.Submit("f", Fixture.PromptIds(0), Greedy with { MaxTokens = 16 }, RouteChoice.Base));
        // A stop string taken from the middle of the free-running text: generation ends there, the stop string excluded.
        string stop = free.Text.Substring(free.Text.Length / 2, 2);
        int at = free.Text.IndexOf(stop, StringComparison.Ordinal);
        var stopped = await Collect(engine.Submit("s", Fixture.PromptIds(0), Greedy with { MaxTokens = 16, Stop = [stop], Logprobs = 3 }, RouteChoice.Base));
        Assert.Equal("stop", stopped.Finish.Reason);
        Assert.Equal(free.Text[..at], stopped.Text);
        Assert.True(stopped.Ids.Count < 16);
        Assert.Equal(free.Ids.Take(stopped.Ids.Count), stopped.Ids);
        Assert.All(stopped.Tokens, t =>
        {
            Assert.Equal(3, t.TopLogprobs!.Count);
            Assert.Equal(t.Id, t.TopLogprobs[0].Id);                              // greedy: the chosen token is the most likely
            Assert.Equal(t.TopLogprobs[0].Logprob, t.Logprob!.Logprob, 5);
            Assert.True(t.Logprob.Logprob <= 0);
        });
    }

    [Fact]
    public async Task BadRequestsAreRefusedAndCancelledOnesFreeTheirRow()
    {
        using var model = ServingModels.TinyMeteora();
        using var engine = new ServingEngine(model, new EngineOptions { MaxBatch = 1, MaxQueue = 1, MaxContext = 32 });
        var e = Assert.Throws<ServingRequestException>(() => engine.Submit("l", Fixture.PromptIds(0), Greedy with { MaxTokens = 40 }, RouteChoice.Base));
        Assert.Equal("context_length_exceeded", e.Code);
        Assert.Equal("max_tokens", Assert.Throws<ServingRequestException>(() => engine.Submit("m", [0], Greedy with { MaxTokens = 0 }, RouteChoice.Base)).Param);
        Assert.Equal("prompt", Assert.Throws<ServingRequestException>(() => engine.Submit("v", [0, 9999], Greedy, RouteChoice.Base)).Param);
        Assert.Equal("stop", Assert.Throws<ServingRequestException>(() => engine.Submit("s", [0], Greedy with { Stop = ["a", "b", "c", "d", "e"] }, RouteChoice.Base)).Param);

        using var cancel = new CancellationTokenSource();
        var running = engine.Submit("r", Fixture.PromptIds(0), Greedy with { MaxTokens = 20 }, RouteChoice.Base, cancel.Token);
        await running.Events.WaitToReadAsync();                                      // it is decoding
        var queued = engine.Submit("q", Fixture.PromptIds(1), Greedy with { MaxTokens = 4 }, RouteChoice.Base);
        Assert.Throws<EngineBusyException>(() => engine.Submit("x", Fixture.PromptIds(1), Greedy, RouteChoice.Base));
        cancel.Cancel();
        var aborted = await Collect(running);
        Assert.Equal("abort", aborted.Finish.Reason);
        var next = await Collect(queued);                                            // got the freed row
        Assert.Equal("length", next.Finish.Reason);
        Assert.Equal(Expected("base_greedy", 1).Take(4), next.Ids);
        Assert.Equal(0, engine.Running);
        Assert.Equal(0, engine.Waiting);
    }
}

public class ServingScheduleTests
{
    [Fact]
    public async Task ALongPromptPrefillsInChunksBetweenTheRunningDecodeSteps()
    {
        using var model = ServingModels.TinyMeteora();
        using var engine = new ServingEngine(model, new EngineOptions { MaxBatch = 2, PrefillChunk = 8, MaxContext = 160 });
        var greedy = new SamplingSettings { Temperature = 0, IgnoreEos = true };
        var running = engine.Submit("a", Fixture.PromptIds(0), greedy with { MaxTokens = 60 }, RouteChoice.Base);
        await running.Events.WaitToReadAsync();                                        // A is decoding
        var longPrompt = Enumerable.Range(0, 100).Select(i => 3 + i * 7 % 300).ToArray();
        var late = engine.Submit("b", longPrompt, greedy with { MaxTokens = 4 }, new RouteChoice(RouteMode.Gates, TopK: 2));
        var a = await ServingEngineTests.Collect(running);
        var b = await ServingEngineTests.Collect(late);
        long bFirst = b.Tokens[0].Step;
        // 100 prompt tokens in chunks of 8 take 13 steps; A got a token at every one of them, none skipped (its
        // first token comes from its own prefill, in the same step as its first decode).
        var aSteps = a.Tokens.Skip(1).Select(t => t.Step).ToList();
        var during = aSteps.Where(s => s > bFirst - 13 && s <= bFirst).ToList();
        Assert.Equal(13, during.Count);
        Assert.All(aSteps.Zip(aSteps.Skip(1)), p => Assert.Equal(p.First + 1, p.Second));
        Assert.Equal(4, b.Ids.Count);
    }
}
