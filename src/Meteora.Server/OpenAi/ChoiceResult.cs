using Meteora.Serving;

namespace Meteora.Server.OpenAi;

/// <summary>What one choice produced: its text, tokens and finish.</summary>
public sealed class ChoiceResult(int index, int promptIndex)
{
    public int Index { get; } = index;
    public int PromptIndex { get; } = promptIndex;
    public System.Text.StringBuilder TextBuilder { get; } = new();
    public string Text => TextBuilder.ToString();
    public List<TokenEvent> Tokens { get; } = new();
    public FinishEvent? Finish { get; set; }
}
