using System.Globalization;
using System.Text.Json;
using Meteora.IO;
using Meteora.Moe;
using Meteora.Training;
using static TorchSharp.torch;

namespace Meteora.Tests.Moe;

/// <summary>
/// The MeteoRA objective on the fixture. The reference's <c>train.grad.*</c> tensors are d(lm_loss)/d(gate) and
/// <c>train.grad_total.*</c> are d(lm_loss + λ·gate_loss)/d(gate), both computed by transformers (fixture README).
/// We check the first against our LM-part gradients (`loss --grad-of lm`, or λ = 0), the second against the full
/// gradient that `loss --out` writes and gate training uses, and that full gradient also against central finite
/// differences of the total loss.
/// </summary>
public class MeteoraLossTests
{
    private static readonly JsonElement Training = Fixture.Reference.GetProperty("training");
    private static int[] Ids => Fixture.PromptIds(Training.GetProperty("prompt").GetInt32());

    private static CliRunner.Result RunLoss(double weight, string? outPath, string gradOf = "total") => CliRunner.Run([
        "loss", "--model", Fixture.Base, "--meteora", Fixture.Meteora, "--ids", string.Join(",", Ids),
        "--task-label", Training.GetProperty("task_label").GetInt32().ToString(),
        "--gate-loss-weight", weight.ToString(CultureInfo.InvariantCulture),
        "--top-k", Training.GetProperty("top_k").GetInt32().ToString(), "--grad-of", gradOf, .. outPath is null ? Array.Empty<string>() : ["--out", outPath]]);

    [Fact]
    public void LossValuesMatchTheReference()
    {
        var r = RunLoss(Training.GetProperty("gate_loss_weight").GetDouble(), null);
        Assert.Equal(0, r.ExitCode);
        var got = JsonDocument.Parse(r.Stdout).RootElement;
        foreach (var name in new[] { "lm_loss", "gate_loss", "total_loss" })
        {
            double want = Training.GetProperty(name).GetDouble(), have = got.GetProperty(name).GetDouble();
            Assert.True(Math.Abs(have - want) <= 1e-4 * Math.Abs(want), $"{name}: {have} vs {want}");
        }
    }

    [Theory]
    [InlineData(0.0, "total")]   // λ = 0: the total is the LM loss
    [InlineData(50.0, "lm")]     // the fixture's λ, gradients of the LM part
    public void ReferenceGradientsEqualOurLanguageModelPart(double weight, string gradOf)
    {
        using var dir = Fixture.TempDir();
        Assert.Equal(0, RunLoss(weight, dir["grad.safetensors"], gradOf).ExitCode);
        using var grads = SafeTensorsFile.Open(dir["grad.safetensors"]);
        Assert.Equal(14, grads.Entries.Count);
        foreach (var t in Training.GetProperty("grad_tensors").EnumerateArray().Select(e => e.GetString()!))
            TensorAssert.RelativeClose(Fixture.Tensor(t), grads.Load(t["train.grad.".Length..]), 1e-3, t);
    }

    [Fact]
    public void TotalGradientsEqualTheReferenceWithTheGateLossIncluded()
    {
        using var dir = Fixture.TempDir();
        Assert.Equal(0, RunLoss(Training.GetProperty("gate_loss_weight").GetDouble(), dir["grad.safetensors"], "total").ExitCode);
        using var grads = SafeTensorsFile.Open(dir["grad.safetensors"]);
        var names = Training.GetProperty("grad_total_tensors").EnumerateArray().Select(e => e.GetString()!).ToList();
        Assert.NotEmpty(names);
        foreach (var t in names)
        {
            using var want = Fixture.Tensor(t);
            using var got = grads.Load(t["train.grad_total.".Length..]);
            TensorAssert.RelativeClose(want, got, 1e-3, t);
            // The gate loss must be what makes these differ from the LM-part reference, or the check proves nothing.
            using var lmOnly = Fixture.Tensor("train.grad." + t["train.grad_total.".Length..]);
            Assert.True((want - lmOnly).norm().item<float>() > 0.1f * want.norm().item<float>(), $"{t}: total and LM-part gradients barely differ");
        }
    }

    [Fact]
    public void TotalGradientMatchesFiniteDifferencesOfTheTotalLoss()
    {
        using var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        m.Configure(topK: 2);
        var example = new EncodedExample(Ids, Ids.Select((_, t) => t + 1 < Ids.Length).ToArray(), Training.GetProperty("task_label").GetInt32(), false);
        using var batch = TrainingBatch.Collate([example], 0, CPU);
        foreach (var g in m.Projections) g.moe_gate.requires_grad = true;
        var loss = MeteoraLoss.Compute(m, batch, 50);
        loss.Total.backward();
        var grads = m.Projections.Select(g => g.moe_gate.grad!.clone()).ToList();
        double norm = Math.Sqrt(grads.Sum(g => g.pow(2).sum().item<float>()));
        Assert.True(norm > 1, "the gate loss must contribute a real gradient");

        // Along the unit gradient direction the derivative of the total loss is ‖∇‖.
        const double eps = 1e-3;
        double At(double step)
        {
            using var _ = no_grad();
            foreach (var (p, g) in m.Projections.Zip(grads)) p.moe_gate.add_(g, alpha: step / norm);
            double value = MeteoraLoss.Compute(m, batch, 50).Total.item<float>();
            foreach (var (p, g) in m.Projections.Zip(grads)) p.moe_gate.add_(g, alpha: -step / norm);
            return value;
        }
        double numeric = (At(eps) - At(-eps)) / (2 * eps);
        Assert.True(Math.Abs(numeric - norm) <= 2e-2 * norm, $"finite difference {numeric} vs analytic {norm}");
    }
}
