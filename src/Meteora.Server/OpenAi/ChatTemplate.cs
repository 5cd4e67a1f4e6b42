using System.Text;

namespace Meteora.Server.OpenAi;

/// <summary>
/// The plain chat template, for models without one of their own (or <c>serve --chat-template plain</c>; a model's
/// own Jinja template is <see cref="Meteora.Tokenization.HfChatTemplate"/>): each message as <c>{role}: {content}</c>
/// on its own line, then <c>assistant:</c> for the reply; the tokenizer adds BOS (README "Serving").
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
}
