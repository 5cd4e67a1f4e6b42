using System.Text.RegularExpressions;

namespace Meteora.Training;

/// <summary>
/// Training examples placed mid-document (<see cref="TrainingOptions.InContextShare"/>): for a share of examples,
/// chosen by seed and index, generic text (a <see cref="GenericCorpus"/> document cut after a whole line, up to
/// <see cref="TrainingOptions.InContextChars"/> characters) comes before the prompt, which continues a numbered list
/// if the text ends in one. An adapter or gate trained only on prompts right after BOS serves them there and nowhere
/// else — not as one line of a longer prompt. The context is never in the loss: <see cref="SequenceEncoder"/> starts
/// both the LM and the gate loss after it.
/// </summary>
public static partial class InContextExamples
{
    /// <summary>Seed of the context documents (any fixed value: they are drawn from the corpus's distribution).</summary>
    public const int ContextSeed = 7_920;

    [GeneratedRegex(@"^(\d+)\. ")] private static partial Regex NumberedLine();

    /// <summary>The text to put before example <paramref name="index"/> ("" for the examples left where they are).</summary>
    public static string ContextFor(int index, TrainingOptions options)
    {
        if (options.InContextShare <= 0) return "";
        var rng = new Random(unchecked(options.Seed * 1_000_003 + index * 7_919 + 101));
        if (rng.NextDouble() >= options.InContextShare) return "";
        string text = GeneratedDocuments.TextOf(ContextSeed, index, rng.Next(16, options.InContextChars + 1));
        int cut = text.LastIndexOf('\n');
        if (cut < 0) return "";
        string prefix = text[..(cut + 1)];
        string lastLine = prefix[..^1][(prefix[..^1].LastIndexOf('\n') + 1)..];
        var numbered = NumberedLine().Match(lastLine);
        return numbered.Success && int.TryParse(numbered.Groups[1].Value, out int k) ? $"{prefix}{k + 1}. " : prefix;
    }
}
