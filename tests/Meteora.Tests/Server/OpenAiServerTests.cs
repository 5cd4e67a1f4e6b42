#pragma warning disable OPENAI001 // ChatCompletionOptions.Seed is marked experimental in the client
using System.ClientModel;
using System.Text.Json;
using Meteora.Server.OpenAi;
using OpenAI;
using OpenAI.Chat;

namespace Meteora.Tests.Server;

/// <summary>The OpenAI-compatible server on loopback, driven by the official OpenAI .NET client and by raw HTTP.</summary>
public class OpenAiServerTests(TinyServer server) : IClassFixture<TinyServer>
{
    private ChatClient Chat(string model) =>
        new(model, new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(server.Server.Address + "/v1") });

    [Fact]
    public async Task OfficialClientStreamedChatEqualsNonStreamedAtAFixedSeedWithExactUsage()
    {
        var client = Chat("meteora");
        ChatMessage[] messages = [new SystemChatMessage("be brief"), new UserChatMessage("reverse: abc")];
        var options = new ChatCompletionOptions { Temperature = 0.8f, TopP = 0.9f, MaxOutputTokenCount = 12, Seed = 1234 };
        ChatCompletion whole = await client.CompleteChatAsync(messages, options);
        var streamed = new System.Text.StringBuilder();
        ChatFinishReason? reason = null;
        ChatTokenUsage? usage = null;
        await foreach (var update in client.CompleteChatStreamingAsync(messages, options))
        {
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
            reason ??= update.FinishReason;
            usage ??= update.Usage;
        }
        Assert.Equal(whole.Content[0].Text, streamed.ToString());
        Assert.Equal(ChatFinishReason.Length, whole.FinishReason);
        Assert.Equal(ChatFinishReason.Length, reason);
        int promptTokens = server.Model.Tokenizer.Encode(ChatTemplate.Render([("system", "be brief"), ("user", "reverse: abc")])).Length;
        Assert.Equal(promptTokens, whole.Usage.InputTokenCount);
        Assert.Equal(12, whole.Usage.OutputTokenCount);
        Assert.Equal(promptTokens + 12, whole.Usage.TotalTokenCount);
        Assert.NotNull(usage);                                   // the client asks for include_usage when streaming
        Assert.Equal(12, usage!.OutputTokenCount);
    }

    [Fact]
    public async Task OfficialClientGetsLogprobsAndStopSequences()
    {
        var client = Chat("base");
        ChatMessage[] messages = [new UserChatMessage("hello")];
        ChatCompletion free = await client.CompleteChatAsync(messages, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 16 });
        string text = free.Content[0].Text;
        string stop = text.Substring(text.Length / 2, 1);
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 16, IncludeLogProbabilities = true, TopLogProbabilityCount = 2 };
        options.StopSequences.Add(stop);
        ChatCompletion stopped = await client.CompleteChatAsync(messages, options);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], stopped.Content[0].Text);
        Assert.NotEmpty(stopped.ContentTokenLogProbabilities);
        Assert.All(stopped.ContentTokenLogProbabilities, lp =>
        {
            Assert.Equal(2, lp.TopLogProbabilities.Count);
            Assert.Equal(lp.TopLogProbabilities[0].LogProbability, lp.LogProbability, 4);   // greedy picks the most likely
        });
    }

    [Theory]
    [InlineData("meteora")]
    [InlineData("add")]
    [InlineData("base")]
    public async Task GreedyCompletionEqualsGenerateFromTheCli(string model)
    {
        var ids = Fixture.PromptIds(1);
        var args = new List<string> { "generate", "--model", Fixture.Base, "--ids", string.Join(",", ids), "--max-new-tokens", "10", "--json" };
        if (model == "meteora") args.AddRange(["--meteora", Fixture.Meteora]);
        else if (model != "base") args.AddRange(["--adapter", Fixture.Adapter(model)]);
        var cli = CliRunner.Run([.. args]);
        Assert.Equal(0, cli.ExitCode);
        var expected = JsonDocument.Parse(cli.Stdout).RootElement;
        var (status, body, _) = await server.Post("/v1/completions", new { model, prompt = ids, max_tokens = 10, temperature = 0 });
        Assert.Equal(200, status);
        var choice = body.GetProperty("choices")[0];
        var newIds = Fixture.Ints(expected.GetProperty("new_token_ids"));
        if (choice.GetProperty("finish_reason").GetString() == "stop")   // the server stops at EOS, generate --json does not
            newIds = newIds.TakeWhile(t => !server.Model.EosIds.Contains(t)).ToArray();
        Assert.Equal(server.Model.Tokenizer.Decode(newIds), choice.GetProperty("text").GetString());
        Assert.Equal(ids.Length, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal("text_completion", body.GetProperty("object").GetString());
    }

    [Fact]
    public async Task RoutingExtensionReportsEachTokensTopKAdaptersPerLayerGroup()
    {
        var (status, body, _) = await server.Post("/v1/completions",
            new { model = "meteora", prompt = "abc", max_tokens = 4, temperature = 0, meteora = new { top_k = 2, return_routing = true } });
        Assert.Equal(200, status);
        var routing = body.GetProperty("choices")[0].GetProperty("meteora_routing");
        Assert.Equal(4, routing.GetArrayLength());
        var names = server.Model.AdapterNames.ToHashSet();
        foreach (var token in routing.EnumerateArray())
        {
            var top = token.GetProperty("adapters").EnumerateArray().ToList();
            Assert.Equal(2, top.Count);
            Assert.All(top, a => Assert.Contains(a.GetProperty("name").GetString()!, names));
            Assert.True(top[0].GetProperty("weight").GetDouble() >= top[1].GetProperty("weight").GetDouble());
            Assert.Equal(2, token.GetProperty("groups").GetArrayLength());                  // two layers, a group each
        }
        // Forced adapter: every token is that adapter's alone.
        (status, body, _) = await server.Post("/v1/completions", new { model = "upper", prompt = "abc", max_tokens = 3, meteora = new { return_routing = true } });
        foreach (var token in body.GetProperty("choices")[0].GetProperty("meteora_routing").EnumerateArray())
        {
            var only = Assert.Single(token.GetProperty("adapters").EnumerateArray());
            Assert.Equal("upper", only.GetProperty("name").GetString());
            Assert.Equal(1.0, only.GetProperty("weight").GetDouble(), 3);
        }
    }

    [Fact]
    public async Task SeveralPromptsAndChoicesAreIndexedAndCountedOnce()
    {
        var (status, body, _) = await server.Post("/v1/completions",
            new { model = "base", prompt = new[] { "ab", "abcd" }, n = 2, max_tokens = 3, temperature = 1.0, seed = 5 });
        Assert.Equal(200, status);
        var choices = body.GetProperty("choices").EnumerateArray().ToList();
        Assert.Equal([0, 1, 2, 3], choices.Select(c => c.GetProperty("index").GetInt32()));
        int prompts = server.Model.Tokenizer.Encode("ab").Length + server.Model.Tokenizer.Encode("abcd").Length;
        Assert.Equal(prompts, body.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(12, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task ModelsHealthReadyAndMetricsEndpoints()
    {
        var models = JsonDocument.Parse(await server.Http.GetStringAsync("/v1/models")).RootElement.GetProperty("data").EnumerateArray().ToList();
        Assert.Equal(["meteora", "reverse", "add", "upper", "base"], models.Select(m => m.GetProperty("id").GetString()));
        Assert.All(models.Take(4), m => Assert.Equal("base", m.GetProperty("parent").GetString()));
        Assert.Equal(200, (int)(await server.Http.GetAsync("/health")).StatusCode);
        Assert.Equal(200, (int)(await server.Http.GetAsync("/ready")).StatusCode);
        await server.Post("/v1/completions", new { model = "meteora", prompt = "x", max_tokens = 2 });
        string metrics = await server.Http.GetStringAsync("/metrics");
        foreach (var name in new[] { "meteora_requests_running", "meteora_requests_waiting", "meteora_time_to_first_token_seconds_bucket",
                     "meteora_inter_token_latency_seconds_bucket", "meteora_e2e_request_latency_seconds_count", "meteora_prompt_tokens_total",
                     "meteora_generation_tokens_total", "meteora_adapter_selections_total{layer_group=\"0\"" })
            Assert.Contains(name, metrics);
    }

    [Fact]
    public async Task BadRequestsGetTheirStatusAndOpenAisErrorObject()
    {
        async Task Expect(int status, string? param, string json, string path = "/v1/completions")
        {
            var (got, body, _) = await server.Post(path, json);
            Assert.True(status == got, $"{json}: expected {status}, got {got}: {body}");
            var error = body.GetProperty("error");
            Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
            Assert.True(error.TryGetProperty("type", out _) && error.TryGetProperty("code", out _));
            Assert.Equal(param, error.GetProperty("param").ValueKind == JsonValueKind.Null ? null : error.GetProperty("param").GetString());
        }
        await Expect(400, null, "{\"model\": \"base\", \"prompt\": ");                                 // malformed JSON
        await Expect(400, null, "[1, 2]");                                                                // not an object
        await Expect(400, "max_tokens", "{\"model\": \"base\", \"prompt\": \"a\", \"max_tokens\": \"ten\"}");
        await Expect(400, "temperature", "{\"model\": \"base\", \"prompt\": \"a\", \"temperature\": 3}");
        await Expect(400, "prompt", "{\"model\": \"base\", \"prompt\": [1, 99999]}");
        await Expect(400, "model", "{\"prompt\": \"a\"}");
        await Expect(400, "best_of_x", "{\"model\": \"base\", \"prompt\": \"a\", \"best_of_x\": 1}");
        await Expect(400, "meteora.top_k", "{\"model\": \"meteora\", \"prompt\": \"a\", \"meteora\": {\"top_k\": 4}}");
        await Expect(400, "meteora.top_k", "{\"model\": \"meteora\", \"prompt\": \"a\", \"meteora\": {\"top_k\": 0}}");
        await Expect(400, "meteora.mode", "{\"model\": \"meteora\", \"prompt\": \"a\", \"meteora\": {\"mode\": 1}}");
        await Expect(400, "max_tokens", "{\"model\": \"base\", \"prompt\": \"a\", \"max_tokens\": 500}");
        await Expect(400, "stop", "{\"model\": \"base\", \"prompt\": \"a\", \"stop\": [\"a\",\"b\",\"c\",\"d\",\"e\"]}");
        await Expect(404, "model", "{\"model\": \"gpt-4\", \"prompt\": \"a\"}");
        await Expect(400, "messages[0].role", "{\"model\": \"base\", \"messages\": [{\"role\": \"robot\", \"content\": \"a\"}]}", "/v1/chat/completions");
        await Expect(400, "messages", "{\"model\": \"base\", \"messages\": \"hi\"}", "/v1/chat/completions");
        await Expect(413, null, "{\"model\": \"base\", \"prompt\": \"" + new string('a', 100_000) + "\"}");
        await Expect(400, null, "{\"model\": \"base\", \"prompt\": \"\\ud800\"}");                               // a lone surrogate
        await Expect(400, "max_tokens", "{\"model\": \"base\", \"prompt\": \"a\", \"max_tokens\": 2147483647}");   // no int overflow
        await Expect(400, "meteora.temperature", "{\"model\": \"meteora\", \"prompt\": \"a\", \"meteora\": {\"temperature\": 1e-50}}");
        await Expect(400, "stop", "{\"model\": \"base\", \"prompt\": \"a\", \"stop\": \"" + new string('x', 600) + "\"}");
        await Expect(400, "n", "{\"model\": \"base\", \"prompt\": [\"a\", \"b\", \"c\"], \"n\": 128}");   // more than queue + rows
        // A vanishing sampling temperature is greedy, not a NaN that would end every running request.
        var (tiny, tinyBody, _) = await server.Post("/v1/completions", "{\"model\": \"base\", \"prompt\": \"a\", \"temperature\": 1e-40, \"max_tokens\": 3}");
        Assert.True(tiny == 200, tinyBody.ToString());
        var (_, missing, notFound) = await server.Post("/v1/nothing", "{}");
        Assert.Equal(404, (int)notFound.StatusCode);
        Assert.True(missing.TryGetProperty("error", out _));
        // A wrong method on a known path: ASP.NET Core's 405, with OpenAI's error object.
        var wrongMethod = await server.Http.GetAsync("/v1/completions");
        Assert.Equal(405, (int)wrongMethod.StatusCode);
        var body = JsonDocument.Parse(await wrongMethod.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("method_not_allowed", body.GetProperty("code").GetString());
        Assert.Contains("GET", body.GetProperty("message").GetString());
        // The server is still fine afterwards.
        Assert.Equal(200, (await server.Post("/v1/completions", new { model = "base", prompt = "a", max_tokens = 1 })).Status);
    }

    [Fact]
    public async Task StreamedCompletionEndsWithFinishReasonUsageAndDone()
    {
        var events = await server.Stream("/v1/completions",
            new { model = "add", prompt = "hi", max_tokens = 5, temperature = 0, stream = true, stream_options = new { include_usage = true } });
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events.SkipLast(1).Select(e => JsonDocument.Parse(e).RootElement).ToList();
        var usage = chunks[^1].GetProperty("usage");
        Assert.Equal(5, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(0, chunks[^1].GetProperty("choices").GetArrayLength());
        Assert.Equal("length", chunks[^2].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        string text = string.Concat(chunks.SkipLast(1).Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString()));
        var (_, whole, _) = await server.Post("/v1/completions", new { model = "add", prompt = "hi", max_tokens = 5, temperature = 0 });
        Assert.Equal(whole.GetProperty("choices")[0].GetProperty("text").GetString(), text);
    }
}
