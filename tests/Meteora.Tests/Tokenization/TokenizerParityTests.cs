using Meteora.Tokenization;

namespace Meteora.Tests.Tokenization;

public class TokenizerParityTests
{
    [Fact]
    public void EveryReferenceCaseEncodesToTheExactIdsAndDecodesBack()
    {
        using var tok = HfTokenizer.Load(Fixture.Base);
        var cases = Fixture.Reference.GetProperty("tokenizer").EnumerateArray().ToList();
        Assert.NotEmpty(cases);
        foreach (var c in cases)
        {
            string text = c.GetProperty("text").GetString()!;
            var expected = Fixture.Ints(c.GetProperty("ids"));
            Assert.Equal(expected, tok.Encode(text));
            Assert.Equal(c.GetProperty("decoded").GetString(), tok.Decode(expected));
        }
    }

    [Fact]
    public void BosComesFromThePostProcessorAndCanBeLeftOut()
    {
        using var tok = HfTokenizer.Load(Fixture.Base);
        Assert.Equal(0, tok.BosId);
        Assert.Equal(1, tok.EosId);
        var with = tok.Encode("reverse: potions => ");
        var without = tok.Encode("reverse: potions => ", addSpecialTokens: false);
        Assert.Equal(with[1..], without);
    }

    [Fact]
    public void TokenizeCommandPrintsJsonIds()
    {
        var r = CliRunner.Run("tokenize", "--model", Fixture.Base, "--text", "add: 417 + 85 => ");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("[0,271,27,379,18,24,268,375,22,260,222]", r.Stdout.Trim());
    }
}
