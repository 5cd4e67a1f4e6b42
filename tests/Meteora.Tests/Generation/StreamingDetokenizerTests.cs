using Meteora.Generation;
using Meteora.Tests.Tokenization;
using Meteora.Tokenization;

namespace Meteora.Tests.Generation;

public class StreamingDetokenizerTests
{
    /// <summary>
    /// The pieces, joined, are the text the new ids decode to after the prompt — with a Metaspace tokenizer (leading
    /// "▁" spaces, stripped only at the very start) and byte-fallback tokens that make one character from several
    /// ids (held back until complete), over more ids than the detokenizer's context window.
    /// </summary>
    [Fact]
    public void PiecesJoinToTheTextOfTheNewIds()
    {
        using var dir = Fixture.TempDir();
        using var tokenizer = HfTokenizer.Load(MetaspaceTokenizerTests.Write(dir));
        int[] prompt = [1, 263, 260];                                                     // <s> ▁hi h
        // ▁hi, i, then "é" as two byte tokens (0xC3 0xA9), ▁, h, i, hi, ▁hi … (20 ids).
        int[] generated = [263, 261, 3 + 0xC3, 3 + 0xA9, 259, 260, 261, 262, 263, 263, 261, 3 + 0xE2, 3 + 0x82, 3 + 0xAC, 259, 262, 263, 260, 261, 263];
        var stream = new StreamingDetokenizer(tokenizer, prompt);
        var pieces = generated.Select(stream.Add).ToList();
        string joined = string.Concat(pieces) + stream.Flush();
        string expected = tokenizer.Decode(prompt.Concat(generated))[tokenizer.Decode(prompt).Length..];
        Assert.Equal(expected, joined);
        Assert.Equal("", pieces[2]);                                                      // half of "é": held back
        Assert.Contains("é", pieces[3]);
        Assert.DoesNotContain('\uFFFD', joined);
    }
}
