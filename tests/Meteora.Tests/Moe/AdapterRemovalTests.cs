using Meteora.Moe;
using static TorchSharp.torch;

namespace Meteora.Tests.Moe;

public class AdapterRemovalTests
{
    /// <summary>
    /// Per projection, the top-2 (indices, weights) and outputs for the same 64 random inputs: routing depends only on
    /// a projection's input and gate, so this compares the two checkpoints' routing directly (in a whole forward, a
    /// change at one layer would change the inputs of the next).
    /// </summary>
    private static Dictionary<string, (long[][] Indices, float[][] Weights, float[][] Output)> Route(string meteora)
    {
        using var _ = no_grad();
        using var m = MeteoraModel.Load(Fixture.Base, meteora, CPU, ScalarType.Float32);
        m.Configure(topK: 2);
        using var recorder = new RoutingRecorder { RecordIndices = true, RecordWeights = true };
        m.Attach(recorder);
        var outputs = new Dictionary<string, float[][]>();
        using var gen = new Generator(11);
        foreach (var p in m.Projections)
        {
            using var x = randn([64, p.Site.InFeatures], generator: gen);                     // (64, in)
            using var y = p.forward(x);                                                        // (64, out)
            outputs[p.Site.Key] = Enumerable.Range(0, 64).Select(i => y[i].data<float>().ToArray()).ToArray();
        }
        var trace = recorder.Trace(); var weights = recorder.Weights();
        return outputs.ToDictionary(kv => kv.Key, kv => (trace[kv.Key], weights[kv.Key], kv.Value));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void RoutingIsUnchangedWhereverTheRemovedAdapterWasNotInTheTopK(bool selfContained)
    {
        using var dir = Fixture.TempDir();
        string source = Fixture.Meteora;
        if (selfContained)
        {
            using var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
            m.Save(dir["self"], Fixture.Base, selfContained: true);
            source = dir["self"];
        }
        var r = AdapterRemoval.Remove(source, "add", dir["out"]);
        Assert.Equal((1, 2, 2, false), (r.Index, r.AdaptersLeft, r.TopK, r.TopKLowered));
        var config = MeteoraCheckpointConfig.Load(dir["out"]);
        Assert.Equal(["reverse", "upper"], config.Adapters.Select(a => a.Name));
        Assert.Equal(selfContained, File.Exists(Path.Combine(dir["out"], MeteoraCheckpoint.AdaptersFile)));

        var before = Route(source);
        var after = Route(dir["out"]);
        int unchanged = 0, involved = 0;
        foreach (var (key, b) in before)
        {
            var a = after[key];
            for (int t = 0; t < b.Indices.Length; t++)
            {
                if (b.Indices[t].Contains(1)) { involved++; continue; }
                // Old indices 0 and 2 are 0 and 1 now; the weights are the same softmax over the same two logits, so
                // the projection's output is the same too.
                Assert.Equal(b.Indices[t].Select(i => i > 1 ? i - 1 : i), a.Indices[t]);
                Assert.Equal(b.Weights[t][0], a.Weights[t][0], 5);
                Assert.Equal(b.Weights[t][1], a.Weights[t][1], 5);
                Assert.All(b.Output[t].Zip(a.Output[t]), o => Assert.Equal(o.First, o.Second, 4));
                unchanged++;
            }
        }
        Assert.True(unchanged > 50 && involved > 50, $"{unchanged} token decisions without the removed adapter, {involved} with it");
    }

    [Fact]
    public void BadRemovalsAreRefusedAndWriteNothing()
    {
        using var dir = Fixture.TempDir();
        var e = Assert.Throws<MeteoraException>(() => AdapterRemoval.Remove(Fixture.Meteora, "nope", dir["a"]));
        Assert.Contains("no adapter named 'nope'", e.Message);
        Assert.False(Directory.Exists(dir["a"]));
        Directory.CreateDirectory(dir["full"]);
        File.WriteAllText(Path.Combine(dir["full"], "keep.txt"), "x");
        Assert.Contains("not empty", Assert.Throws<MeteoraException>(() => AdapterRemoval.Remove(Fixture.Meteora, "add", dir["full"])).Message);
        Assert.Equal("x", File.ReadAllText(Path.Combine(dir["full"], "keep.txt")));
        Assert.Contains("checkpoint itself", Assert.Throws<MeteoraException>(() => AdapterRemoval.Remove(Fixture.Meteora, "add", Fixture.Meteora)).Message);
        // Down to one adapter, top-k (2) is lowered to 1; the last adapter cannot go.
        AdapterRemoval.Remove(Fixture.Meteora, "add", dir["two"]);
        var one = AdapterRemoval.Remove(dir["two"], "upper", dir["one"]);
        Assert.True(one.TopKLowered);
        Assert.Equal(1, MeteoraCheckpointConfig.Load(dir["one"]).TopK);
        Assert.Contains("only adapter", Assert.Throws<MeteoraException>(() => AdapterRemoval.Remove(dir["one"], "reverse", dir["zero"])).Message);
        var cli = CliRunner.Run("remove-adapter", "--meteora", Fixture.Meteora, "--name", "missing", "--out", dir["cli"]);
        CliRunner.AssertUserError(cli, "missing");
    }
}
