using System.Text.Json;
using Meteora.Tokenization;
using Meteora.Tokenization.Jinja;

namespace Meteora.Tests.Tokenization;

/// <summary>
/// Our Jinja engine against jinja2 3.1 configured as transformers' apply_chat_template configures it, on six
/// templates (header tokens, ChatML, [INST] with a folded system prompt and an alternation check, a multi-line
/// layout whose whitespace trim_blocks/lstrip_blocks decide, tools as indented JSON, and one exercising macros,
/// filters, tests, methods, slicing, arithmetic, scoping and loop control) × four conversations × generation prompt
/// on/off. Outputs must be identical to the character; where jinja2's template raised, ours raises the same message.
/// </summary>
public class JinjaTemplateTests
{
    private static readonly JsonElement Cases =
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Tokenization", "chat-templates.json"))).RootElement;

    public static IEnumerable<object[]> Templates() =>
        Cases.GetProperty("templates").EnumerateArray().Select(t => new object[] { t.GetProperty("name").GetString()! });

    private static List<IReadOnlyDictionary<string, object?>> Messages(string conversation) =>
        Cases.GetProperty("conversations").GetProperty(conversation).EnumerateArray()
            .Select(m => (IReadOnlyDictionary<string, object?>)m.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.GetString())).ToList();

    [Theory]
    [MemberData(nameof(Templates))]
    public void RendersExactlyAsJinja2(string name)
    {
        var entry = Cases.GetProperty("templates").EnumerateArray().Single(t => t.GetProperty("name").GetString() == name);
        var template = HfChatTemplate.FromSource(entry.GetProperty("template").GetString()!,
            new Dictionary<string, string> { ["bos_token"] = "<s>", ["eos_token"] = "</s>" });
        foreach (var c in entry.GetProperty("cases").EnumerateArray())
        {
            string conversation = c.GetProperty("conversation").GetString()!;
            bool gen = c.GetProperty("add_generation_prompt").GetBoolean();
            var tools = c.GetProperty("tools").ValueKind == JsonValueKind.Array ? c.GetProperty("tools").EnumerateArray().Select(t => (object?)t).ToList() : null;
            string what = $"{name} / {conversation} / add_generation_prompt={gen}";
            if (c.TryGetProperty("raised", out var raised))
            {
                var e = Assert.Throws<TemplateRenderException>(() => template.Render(Messages(conversation), gen, tools));
                Assert.True(e.Raised, what);
                Assert.EndsWith(raised.GetString()!, e.Message);
            }
            else
            {
                string expected = c.GetProperty("output").GetString()!;
                string actual = template.Render(Messages(conversation), gen, tools);
                Assert.True(expected == actual, $"{what}:\n--- jinja2\n{expected}\n--- ours\n{actual}\n---");
            }
        }
    }

    [Theory]
    [InlineData("{% if x %}never closed", "missing '{% endif %}'")]
    [InlineData("{{ 'unterminated }}", "never closed")]
    [InlineData("{% include 'other.jinja' %}", "the 'include' tag is not supported")]
    [InlineData("{{ a + }}", "expression expected")]
    [InlineData("{% endfor %}", "unexpected '{% endfor %}'")]
    public void SyntaxErrorsAreOneLineNamingTheLine(string source, string expected)
    {
        var e = Assert.Throws<MeteoraException>(() => JinjaTemplate.Parse(source));
        Assert.Contains("chat template line 1", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void RenderFaultsAreNotRaisedErrors()
    {
        var t = JinjaTemplate.Parse("line one\n{{ messages.missing.deeper }}");
        var e = Assert.Throws<TemplateRenderException>(() => t.Render(new Dictionary<string, object?> { ["messages"] = new Dictionary<string, object?>() }));
        Assert.False(e.Raised);
        Assert.Contains("line 2", e.Message);
        Assert.Contains("undefined", e.Message);
        Assert.Throws<TemplateRenderException>(() => JinjaTemplate.Parse("{{ 'a' + 1 }}").Render(new Dictionary<string, object?>()));
        Assert.Throws<TemplateRenderException>(() => JinjaTemplate.Parse("{{ nope | nofilter }}").Render(new Dictionary<string, object?>()));
        // Sorting values that do not compare (here a string and a number) is a template fault too, not a crash.
        var mixed = Assert.Throws<TemplateRenderException>(() => JinjaTemplate.Parse("{{ ['a', 1] | sort }}").Render(new Dictionary<string, object?>()));
        Assert.False(mixed.Raised);
        Assert.Contains("line 1", mixed.Message);
    }

    [Fact]
    public void AModelFolderTemplateIsFoundInTokenizerConfigOrBesideIt()
    {
        using var dir = Meteora.Tests.Fixture.TempDir();
        string folder = dir["m"];
        Directory.CreateDirectory(folder);
        Assert.Null(HfChatTemplate.Load(folder));
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"),
            """{"bos_token": {"content": "<B>", "lstrip": false}, "eos_token": "<E>", "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}"}]}""");
        var t = HfChatTemplate.Load(folder)!;
        Assert.Equal("<B>hi<E>", t.Render([new Dictionary<string, object?> { ["role"] = "user", ["content"] = "hi" }]));

        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), """{"eos_token": "<E>"}""");
        File.WriteAllText(Path.Combine(folder, "chat_template.jinja"), "{{ messages | length }}{{ eos_token }}");
        Assert.Equal("1<E>", HfChatTemplate.Load(folder)!.Render([new Dictionary<string, object?> { ["role"] = "user", ["content"] = "x" }]));

        // As transformers: a chat_template.jinja file wins over tokenizer_config.json's template.
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), """{"eos_token": "<E>", "chat_template": "config"}""");
        Assert.Equal("1<E>", HfChatTemplate.Load(folder)!.Render([new Dictionary<string, object?> { ["role"] = "user", ["content"] = "x" }]));

        File.WriteAllText(Path.Combine(folder, "chat_template.jinja"), "{% for %}");
        var e = Assert.Throws<MeteoraException>(() => HfChatTemplate.Load(folder));
        Assert.Contains("chat_template.jinja", e.Message);
        File.Delete(Path.Combine(folder, "chat_template.jinja"));
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), """{"chat_template": 3}""");
        Assert.Contains("chat_template must be a string", Assert.Throws<MeteoraException>(() => HfChatTemplate.Load(folder)).Message);

        // Named templates: "tool_use" renders requests that carry tools.
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"),
            """{"chat_template": [{"name": "default", "template": "plain"}, {"name": "tool_use", "template": "tools: {{ tools | length }}"}]}""");
        var named = HfChatTemplate.Load(folder)!;
        var user = new Dictionary<string, object?> { ["role"] = "user", ["content"] = "x" };
        Assert.Equal("plain", named.Render([user]));
        Assert.Equal("tools: 1", named.Render([user], tools: [new Dictionary<string, object?> { ["type"] = "function" }]));
    }
}
