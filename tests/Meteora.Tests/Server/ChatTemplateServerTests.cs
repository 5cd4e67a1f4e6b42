using Meteora.Tokenization;

namespace Meteora.Tests.Server;

/// <summary>A server whose chat prompts go through a model-style Jinja template.</summary>
public sealed class TemplatedServer : IAsyncLifetime
{
    public const string Source =
        "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('the conversation must not start with the assistant') }}{% endif %}" +
        "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";

    public TinyServer Inner { get; } = new() { ChatTemplate = HfChatTemplate.FromSource(Source, new Dictionary<string, string> { ["bos_token"] = "<B>" }) };
    public Task InitializeAsync() => Inner.InitializeAsync();
    public Task DisposeAsync() => Inner.DisposeAsync();
}

public class ChatTemplateServerTests(TemplatedServer fixture) : IClassFixture<TemplatedServer>
{
    /// <summary>
    /// A chat request is the completion of exactly the template's text, encoded without added special tokens (the
    /// template writes its own); "developer" reaches the template as "system"; a conversation the template refuses is
    /// a 400 carrying its message.
    /// </summary>
    [Fact]
    public async Task ChatPromptsAreTheTemplatesTextAndItsRefusalsAre400s()
    {
        var server = fixture.Inner;
        var (status, chat, _) = await server.Post("/v1/chat/completions", new
        {
            model = "base", max_tokens = 6, temperature = 0,
            messages = new object[] { new { role = "developer", content = "be brief" }, new { role = "user", content = " abc " } },
        });
        Assert.Equal(200, status);
        int[] ids = server.Model.Tokenizer.Encode("<B><system>be brief\n<user>abc\n<assistant>", addSpecialTokens: false);
        Assert.Equal(ids.Length, chat.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        var (_, completion, _) = await server.Post("/v1/completions", new { model = "base", prompt = ids, max_tokens = 6, temperature = 0 });
        Assert.Equal(completion.GetProperty("choices")[0].GetProperty("text").GetString(),
            chat.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());

        var (refused, error, _) = await server.Post("/v1/chat/completions", new
        {
            model = "base", max_tokens = 2, messages = new object[] { new { role = "assistant", content = "hi" } },
        });
        Assert.Equal(400, refused);
        Assert.Contains("the conversation must not start with the assistant", error.GetProperty("error").GetProperty("message").GetString());
        Assert.Equal("messages", error.GetProperty("error").GetProperty("param").GetString());
    }
}
