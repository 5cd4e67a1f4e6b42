using Meteora.Llama;
using Meteora.Tokenization;
using Meteora.Training;
using static TorchSharp.torch;

namespace Meteora.Tests.Training;

public class TinyBaseTests
{
    [Fact]
    public void ByteLevelTokenizerIsOneTokenPerByteAfterBos()
    {
        using var dir = Fixture.TempDir();
        ByteLevelTokenizerWriter.Write(dir.Path);
        using var tok = HfTokenizer.Load(dir.Path);
        string text = "add: 12 => é";
        var bytes = System.Text.Encoding.UTF8.GetBytes(text);
        Assert.Equal(new[] { 0 }.Concat(bytes.Select(b => b + ByteLevelTokenizerWriter.SpecialCount)).ToArray(), tok.Encode(text));
        Assert.Equal(text, tok.Decode(tok.Encode(text)));
        Assert.Equal((0, 1), (tok.BosId, tok.EosId));
    }

    [Fact]
    public void ConfigJsonRoundTrips()
    {
        using var dir = Fixture.TempDir();
        var c = TinyBaseBuilder.DefaultConfig;
        File.WriteAllText(dir["config.json"], c.ToJson());
        var back = LlamaConfig.Load(dir.Path);
        Assert.Equal(c with { TorchDtype = "float32" }, back with { EosTokenIds = c.EosTokenIds });
        Assert.Equal(c.EosTokenIds, back.EosTokenIds);
    }

    [Fact]
    public void MakeBaseWritesALoadableModelThatLearnedTheCorpus()
    {
        using var dir = Fixture.TempDir();
        var options = new TrainingOptions { Steps = 60, BatchSize = 16, LearningRate = 3e-3, MaxSeqLen = 128, Seed = 1 };
        var (initial, final) = TinyBaseBuilder.Build(dir["base"], TinyBaseBuilder.DefaultConfig, options, 600, CPU);
        Assert.True(final < initial * 0.5, $"held-out loss {initial} -> {final}");
        using var lm = LlamaLoader.Load(dir["base"], CPU, ScalarType.Float32);
        using var tok = HfTokenizer.Load(dir["base"]);
        Assert.Equal(ByteLevelTokenizerWriter.VocabSize, lm.Config.VocabSize);
        var r = CliRunner.Run("generate", "--model", dir["base"], "--prompt", "the small", "--max-new-tokens", "8", "--json");
        Assert.Equal(0, r.ExitCode);
    }

    [Fact]
    public void MakeBaseBuildsTheSizesAskedForAndRefusesImpossibleOnes()
    {
        using var dir = Fixture.TempDir();
        var r = CliRunner.Run("make-base", "--out", dir["b"], "--layers", "2", "--hidden-size", "64", "--intermediate-size", "96",
            "--heads", "4", "--kv-heads", "1", "--documents", "20", "--steps", "2", "--batch-size", "2", "--max-seq-len", "64");
        Assert.Equal(0, r.ExitCode);
        var c = LlamaConfig.Load(dir["b"]);
        Assert.Equal((2, 64, 96, 4, 1, 16), (c.NumHiddenLayers, c.HiddenSize, c.IntermediateSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim));
        using var lm = LlamaLoader.Load(dir["b"], CPU, ScalarType.Float32);
        CliRunner.AssertUserError(CliRunner.Run("make-base", "--out", dir["x"], "--hidden-size", "100", "--heads", "8"), "--hidden-size 100", "8 heads");
        CliRunner.AssertUserError(CliRunner.Run("make-base", "--out", dir["y"], "--heads", "4", "--kv-heads", "3"), "--kv-heads 3 must divide --heads 4");
        CliRunner.AssertUserError(CliRunner.Run("make-base", "--out", dir["z"], "--layers", "0"), "must be ≥ 1");
        Assert.False(Directory.Exists(dir["x"]) && Directory.EnumerateFileSystemEntries(dir["x"]).Any());
    }
}
