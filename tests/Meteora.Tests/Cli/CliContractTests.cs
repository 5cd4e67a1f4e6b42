using System.Text.Json;
using Meteora.IO;

namespace Meteora.Tests.Cli;

/// <summary>The forward and generate commands per DESIGN.md's command-line contract.</summary>
public class CliContractTests
{
    private static string Ids(int prompt) => string.Join(",", Fixture.PromptIds(prompt));

    [Fact]
    public void ForwardWritesFloat32LogitsThatMatchTheReference()
    {
        using var dir = Fixture.TempDir();
        var r = CliRunner.Run("forward", "--model", Fixture.Base, "--ids", Ids(0), "--out", dir["l.safetensors"]);
        Assert.Equal(0, r.ExitCode);
        using var f = SafeTensorsFile.Open(dir["l.safetensors"]);
        Assert.Equal("F32", f.Get("logits").DTypeName);
        TensorAssert.Close(Fixture.Tensor("base.logits.0"), f.Load("logits"), 1e-3, "cli forward");
    }

    [Fact]
    public void GenerateJsonGivesTheGreedyReferenceTokens()
    {
        var g = Fixture.Reference.GetProperty("base_greedy")[1];
        var expected = Fixture.Ints(g.GetProperty("new_tokens"));
        var r = CliRunner.Run("generate", "--model", Fixture.Base, "--ids", Ids(1), "--max-new-tokens", expected.Length.ToString(), "--greedy", "--json");
        Assert.Equal(0, r.ExitCode);
        var json = JsonDocument.Parse(r.Stdout).RootElement;
        Assert.Equal(Fixture.PromptIds(1), Fixture.Ints(json.GetProperty("prompt_ids")));
        Assert.Equal(expected, Fixture.Ints(json.GetProperty("new_token_ids")));
        using var tok = Meteora.Tokenization.HfTokenizer.Load(Fixture.Base);
        Assert.Equal(tok.Decode(expected), json.GetProperty("text").GetString());             // the continuation, without the prompt
    }

    [Fact]
    public void GenerateStreamsThePromptAndTheContinuationAsText()
    {
        var r = CliRunner.Run("generate", "--model", Fixture.Base, "--prompt", "the lazy owls brew seven", "--max-new-tokens", "5");
        Assert.Equal(0, r.ExitCode);
        Assert.StartsWith("the lazy owls brew seven", r.Stdout);
        Assert.True(r.Stdout.TrimEnd('\n').Length > "the lazy owls brew seven".Length);
    }

    [Fact]
    public void SamplingWithASeedIsRepeatable()
    {
        string[] args = ["generate", "--model", Fixture.Base, "--ids", Ids(2), "--max-new-tokens", "12", "--temperature-sampling", "1.3", "--top-p", "0.9", "--seed", "3", "--json"];
        var a = CliRunner.Run(args);
        Assert.Equal(0, a.ExitCode);
        Assert.Equal(a.Stdout, CliRunner.Run(args).Stdout);
    }

    [Fact]
    public void GreedyWithoutStopAtEosGivesExactlyMaxNewTokens()
    {
        var r = CliRunner.Run("generate", "--model", Fixture.Base, "--ids", Ids(0), "--max-new-tokens", "7", "--json");
        Assert.Equal(7, JsonDocument.Parse(r.Stdout).RootElement.GetProperty("new_token_ids").GetArrayLength());
    }
}
