using System.Text;

namespace Meteora.Server.OpenAi;

/// <summary>
/// Turns chat messages into a prompt. Hugging Face chat templates are Jinja programs and .NET has no Jinja
/// engine that we can depend on, so every model is served with this documented plain template (README
/// "Serving"): each message as <c>{role}: {content}</c> on its own line, then <c>assistant:</c> for the reply;
/// the tokenizer adds BOS. A base with a <c>chat_template</c> is served with it too, and the server says so at
/// start-up.
/// </summary>
public static class ChatTemplate
{
    /// <summary>Roles a message may have.</summary>
    public static readonly IReadOnlySet<string> Roles = new HashSet<string> { "system", "developer", "user", "assistant" };

    /// <summary>The prompt for <paramref name="messages"/> (role, content), ending where the assistant's reply begins.</summary>
    public static string Render(IReadOnlyList<(string Role, string Content)> messages)
    {
        var text = new StringBuilder();
        foreach (var (role, content) in messages) text.Append(role).Append(": ").Append(content).Append('\n');
        return text.Append("assistant:").ToString();
    }

    /// <summary>Whether the base folder's tokenizer_config.json carries a Jinja chat template (not rendered here).</summary>
    public static bool BaseHasTemplate(string baseFolder)
    {
        string path = Path.Combine(baseFolder, "tokenizer_config.json");
        if (!File.Exists(path)) return false;
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(path));
            return doc.RootElement.TryGetProperty("chat_template", out var t) && t.ValueKind != System.Text.Json.JsonValueKind.Null;
        }
        catch (System.Text.Json.JsonException)
        {
            return false;
        }
    }
}
