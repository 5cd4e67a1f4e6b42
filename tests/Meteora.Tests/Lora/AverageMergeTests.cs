using Meteora.Llama;
using Meteora.Tests.Training;
using Meteora.Lora;
using static TorchSharp.torch;

namespace Meteora.Tests.Lora;

public class AverageMergeTests
{
    [Fact]
    public void AverageOfOneAdapterTwiceIsThatAdapterAndTwoAdaptersGiveTheMeanDelta()
    {
        using var _ = no_grad();
        using var baseLm = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.Float32);
        var config = baseLm.Config;
        using var upper = LoraAdapter.Load(Fixture.Adapter("upper"), config);
        using var add = LoraAdapter.Load(Fixture.Adapter("add"), config);
        string key = "model.layers.0.self_attn.q_proj";

        using var twice = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.Float32);
        Assert.Equal(14, LoraMerger.AverageMerge(twice, [upper, upper]));
        using var lora = LoraModel.Load(Fixture.Base, Fixture.Adapter("upper"), CPU, ScalarType.Float32);
        using var ids = tensor(Fixture.PromptIds(0).Select(x => (long)x).ToArray(), [1, Fixture.PromptIds(0).Length]);
        TensorAssert.Close(lora.forward(ids), twice.forward(ids), 1e-4, "mean of (upper, upper) = upper");

        using var both = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.Float32);
        LoraMerger.AverageMerge(both, [upper, add]);
        Tensor W(LlamaForCausalLM lm) => lm.Projections().Single(p => p.Site.Key == key).weight;
        var (ua, ub) = upper.Weights[key];
        var (aa, ab) = add.Weights[key];
        using var expected = W(baseLm) + (ub.matmul(ua) * upper.Config.Scale + ab.matmul(aa) * add.Config.Scale) / 2;
        TensorAssert.Close(expected, W(both), 1e-5, key);
        Assert.True((W(both) - W(baseLm)).abs().max().item<float>() > 1e-3, "the merge changed the weight");
    }

    [Fact]
    public void EvalMergeAvgModeRunsAndNamesMissingAdapters()
    {
        using var dir = Fixture.TempDir();
        ReverseDigitsTask.Write(Path.Combine(dir["data"], "rev"), train: 5, test: 2);
        Directory.CreateDirectory(dir["ads"]);
        foreach (var name in new[] { "add", "upper" })
        {
            Directory.CreateDirectory(Path.Combine(dir["ads"], name));
            foreach (var f in Directory.GetFiles(Fixture.Adapter(name))) File.Copy(f, Path.Combine(dir["ads"], name, Path.GetFileName(f)));
        }
        var r = CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "merge-avg", "--adapters-dir", dir["ads"], "--data", dir["data"], "--out", dir["rep"]);
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("average-merged 2 adapters", r.Stderr);
        Assert.True(File.Exists(Path.Combine(dir["rep"], "results.json")));
        CliRunner.AssertUserError(CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "merge-avg", "--data", dir["data"], "--out", dir["o"]), "needs --adapters-dir");
        CliRunner.AssertUserError(CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "merge-avg", "--adapters-dir", dir["data"], "--data", dir["data"], "--out", dir["o"]), "no adapter folders");
    }
}
