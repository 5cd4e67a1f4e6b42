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
        var options = new TrainingOptions { Steps = 100, BatchSize = 16, LearningRate = 3e-3, MaxSeqLen = 128, Seed = 1 };
        var (_, initial, final, _, _) = TinyBaseBuilder.Build(dir["base"], TinyBaseBuilder.DefaultConfig, options, 600, CPU);
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

public class BasePretrainingTests
{
    private static readonly string[] Small = ["--layers", "1", "--hidden-size", "64", "--intermediate-size", "96", "--heads", "4", "--kv-heads", "2",
        "--steps", "6", "--batch-size", "2", "--max-seq-len", "128", "--seed", "3", "--eval-limit", "4"];

    private static byte[] Weights(string folder)
    {
        using var files = Meteora.IO.CheckpointFiles.Open(folder);
        using var lm = LlamaLoader.Load(folder, CPU, ScalarType.Float32);
        return lm.BaseWeights().SelectMany(w => w.Tensor.contiguous().bytes.ToArray()).ToArray();
    }

    [Fact]
    public void MixedPrecisionTrainsFloat32MastersAndResumesExactly()
    {
        using var dir = Fixture.TempDir();
        string[] bf16 = [.. Small, "--dtype", "bfloat16"];
        Assert.Equal(0, CliRunner.Run(["make-base", "--out", dir["whole"], .. bf16]).ExitCode);
        var stopped = CliRunner.Run(["make-base", "--out", dir["split"], .. bf16, "--stop-after", "3"]);
        Assert.Equal(0, stopped.ExitCode);
        Assert.Contains("--resume", stopped.Stderr);
        Assert.False(File.Exists(dir["split/model.safetensors"]));
        Assert.Equal(0, CliRunner.Run(["make-base", "--out", dir["split"], .. bf16, "--resume"]).ExitCode);
        Assert.Equal(Weights(dir["whole"]), Weights(dir["split"]));
        // The artifact holds the float32 masters, not bf16-rounded copies: some weight is not a bf16 value.
        using (var lm = LlamaLoader.Load(dir["whole"], CPU, ScalarType.Float32))
        {
            var w = lm.model.layers[0].self_attn.q_proj.weight;
            Assert.True(w.ne(w.to(ScalarType.BFloat16).to(ScalarType.Float32)).any().item<bool>(), "master weights were rounded to bf16");
        }
        // float32 training takes another path (no masters) and gives other weights.
        Assert.Equal(0, CliRunner.Run(["make-base", "--out", dir["fp32"], .. Small]).ExitCode);
        Assert.NotEqual(Weights(dir["whole"]), Weights(dir["fp32"]));
    }

    [Fact]
    public void ResumingInAnotherPrecisionOrInFloat16IsRefused()
    {
        using var dir = Fixture.TempDir();
        Assert.Equal(0, CliRunner.Run(["make-base", "--out", dir["b"], .. Small, "--dtype", "bfloat16", "--stop-after", "2"]).ExitCode);
        CliRunner.AssertUserError(CliRunner.Run(["make-base", "--out", dir["b"], .. Small, "--resume"]), "other settings or data");
        CliRunner.AssertUserError(CliRunner.Run(["make-base", "--out", dir["c"], .. Small, "--dtype", "float16"]), "--dtype float16", "loss scaling");
        // Gradient accumulation in mixed precision runs and resumes exactly too.
        string[] ga = [.. Small.Select((a, i) => i > 0 && Small[i - 1] == "--batch-size" ? "1" : a), "--dtype", "bfloat16", "--grad-accum", "2"];
        Assert.Equal(0, CliRunner.Run(["make-base", "--out", dir["g1"], .. ga]).ExitCode);
        Assert.Equal(0, CliRunner.Run(["make-base", "--out", dir["g2"], .. ga, "--stop-after", "3"]).ExitCode);
        File.AppendAllText(dir["g2/metrics.jsonl"], "{\"step\": 4, \"kind\": \"tra");   // a line cut short by a kill
        var resumed = CliRunner.Run(["make-base", "--out", dir["g2"], .. ga, "--resume"]);
        Assert.Equal(0, resumed.ExitCode);
        Assert.Contains("skipped 1 unreadable line", resumed.Stderr);
        Assert.Equal(Weights(dir["g1"]), Weights(dir["g2"]));
    }

    [Fact]
    public void MakeBaseWritesShardsProbesLossCurveAndASealedModelCard()
    {
        using var dir = Fixture.TempDir();
        Assert.Equal(0, CliRunner.Run(["make-base", "--out", dir["b"], .. Small.Select(a => a == "128" ? "512" : a), "--shard-size-mb", "0.05"]).ExitCode);
        var index = Path.Combine(dir["b"], "model.safetensors.index.json");
        Assert.True(File.Exists(index));
        Assert.False(File.Exists(dir["b/model.safetensors"]));
        int shards = Directory.GetFiles(dir["b"], "model-*-of-*.safetensors").Length;
        Assert.True(shards > 1, $"{shards} shards");
        using (var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(dir["b/probes.json"])))
        {
            var copy = doc.RootElement.GetProperty("copy_accuracy").GetDouble();
            Assert.InRange(copy, 0, 1);
            var buckets = doc.RootElement.GetProperty("loss_by_position").EnumerateArray().ToList();
            Assert.Equal(511, buckets[^1].GetProperty("to").GetInt32());   // buckets cover the context (512 tokens)
            Assert.Equal(4, buckets.Count);
        }
        Assert.True(new FileInfo(dir["b/loss_curve.png"]).Length > 1000);
        string readme = File.ReadAllText(dir["b/README.md"]);
        foreach (var f in Directory.GetFiles(dir["b"], "model-*.safetensors"))
            Assert.Contains($"| {Path.GetFileName(f)} | `{Meteora.IO.ArtifactCard.Sha256(f)}` |", readme);
        Assert.Contains("make-base --out", readme);

        // A damaged shard: loading names the file and the rebuild command.
        using var lm0 = LlamaLoader.Load(dir["b"], CPU, ScalarType.Float32);
        var shard = Directory.GetFiles(dir["b"], "model-*.safetensors")[0];
        var bytes = File.ReadAllBytes(shard);
        bytes[^1] ^= 0x40;
        File.WriteAllBytes(shard, bytes);
        var e = Assert.Throws<MeteoraException>(() => LlamaLoader.Load(dir["b"], CPU, ScalarType.Float32));
        Assert.Contains(Path.GetFileName(shard), e.Message);
        Assert.Contains("SHA-256 mismatch", e.Message);
        Assert.Contains("rebuild it with: meteora make-base", e.Message);
        Assert.DoesNotContain("\n", e.Message);
        File.Delete(shard);
        e = Assert.Throws<MeteoraException>(() => LlamaLoader.Load(dir["b"], CPU, ScalarType.Float32));
        Assert.Contains("missing", e.Message);
    }

    [Fact]
    public void GeneratedDocumentsAreDeterministicFillTheContextAndDisjointByRange()
    {
        using var dir = Fixture.TempDir();
        ByteLevelTokenizerWriter.Write(dir.Path);
        using var tok = HfTokenizer.Load(dir.Path);
        var a = new GeneratedDocuments(tok, 50, first: 0, seed: 1, maxSeqLen: 512, eosId: 1);
        var b = new GeneratedDocuments(tok, 50, first: 0, seed: 1, maxSeqLen: 512, eosId: 1);
        var held = new GeneratedDocuments(tok, 50, first: 50, seed: 1, maxSeqLen: 512, eosId: 1);
        var parallel = Enumerable.Range(0, 50).AsParallel().AsOrdered().Select(i => a[i].Ids).ToList();
        for (int i = 0; i < 50; i++)
        {
            Assert.Equal(b[i].Ids, a[i].Ids);
            Assert.Equal(a[i].Ids, parallel[i]);
            Assert.InRange(a[i].Ids.Length, 200, 512);
        }
        double mean = Enumerable.Range(0, 50).Average(i => a[i].Ids.Length);
        Assert.True(mean > 0.85 * 512, $"documents fill {mean / 512:P0} of the context on average");
        Assert.Empty(Enumerable.Range(0, 50).Select(a.Text).Intersect(Enumerable.Range(0, 50).Select(held.Text)));
        Assert.NotEqual(a.Fingerprint, held.Fingerprint);
        Assert.NotEqual(a.Text(0), new GeneratedDocuments(tok, 50, 0, seed: 2, 512, 1).Text(0));
    }
}

public class ProbeBaseCommandTests
{
    [Fact]
    public void ProbesTheShippedBaseAndWritesJson()
    {
        using var dir = Fixture.TempDir();
        string model = Path.Combine(Fixture.RepoRoot, "models", "meteora-demo", "base");
        var r = CliRunner.Run("probe-base", "--model", model, "--context", "512", "--out", dir["p.json"]);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("composite-style restatement (tokens / whole lines): 0 shots", r.Stdout);
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(dir["p.json"]));
        Assert.True(doc.RootElement.GetProperty("copy_accuracy").GetDouble() > 0.9, "the shipped base copies restated lists");
        Assert.Equal(3, doc.RootElement.GetProperty("restatement").GetArrayLength());
        Assert.Equal(4, doc.RootElement.GetProperty("loss_by_position").GetArrayLength());
        CliRunner.AssertUserError(CliRunner.Run("probe-base", "--model", model, "--context", "8"), "--context: 8");
    }
}
