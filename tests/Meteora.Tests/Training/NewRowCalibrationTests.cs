using Meteora.Data;
using Meteora.Generation;
using Meteora.Llama;
using Meteora.Moe;
using Meteora.Tokenization;
using Meteora.Training;
using static TorchSharp.torch;

namespace Meteora.Tests.Training;

public class NewRowCalibrationTests
{
    [Fact]
    public void BalancedAccuracyCountsEveryTaskEquallyAndScalesOnlyTheNewRow()
    {
        // Three adapters, the new one is row 2. Old task 0: three positions; old task 1: one; the new task 2: one.
        float[] logits =
        [
            1.0f, 0.0f, 1.2f,    // task 0, lost to the new row by a small margin
            1.0f, 0.0f, 0.5f,    // task 0, right
            1.0f, 0.0f, 0.5f,    // task 0, right
            0.0f, 1.0f, 0.5f,    // task 1, right
            0.2f, 0.0f, 0.9f,    // task 2, right
        ];
        int[] labels = [0, 0, 0, 1, 2];
        // × 1: the mean of the three tasks' shares, 2/3, 1 and 1 (not the share of all positions, 4/5).
        Assert.Equal((2.0 / 3 + 1 + 1) / 3, NewRowCalibration.Balanced(logits, labels, 3, newRow: 2, alpha: 1.0), 12);
        // × 0.8: the first position goes back to task 0 (0.96 < 1.0) and the new task's still wins (0.72 > 0.2).
        Assert.Equal(1.0, NewRowCalibration.Balanced(logits, labels, 3, newRow: 2, alpha: 0.8), 12);
        // × 0.2: the new task's position is lost too (0.18 < 0.2).
        Assert.Equal(2.0 / 3, NewRowCalibration.Balanced(logits, labels, 3, newRow: 2, alpha: 0.2), 12);
        // Only the new row is scaled: × 0.8 on row 1 (an old task's) changes nothing here, on row 2 it does.
        Assert.Equal(NewRowCalibration.Balanced(logits, labels, 3, newRow: 2, alpha: 1.0), NewRowCalibration.Balanced(logits, labels, 3, newRow: 1, alpha: 0.8), 12);
    }

    [Fact]
    public void TheGridHoldsOneAndStaysNonNegative()
    {
        Assert.Contains(1.0, NewRowCalibration.Grid);
        Assert.All(NewRowCalibration.Grid, a => Assert.InRange(a, 0, 2));
    }

    [Fact]
    public void ApplyScalesOnlyTheLastRowsAndNeverLowersTheHeldOutBalancedAccuracy()
    {
        using var dir = Fixture.TempDir();
        string data = FixtureTasks.Write(dir["data"], perTask: 12);
        using var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        using var tokenizer = HfTokenizer.Load(Fixture.Base);
        var config = LlamaConfig.Load(Fixture.Base);
        var encoder = new SequenceEncoder(tokenizer, 128, responseOnly: false, SpecialTokens.TrainingEos(config, tokenizer));
        var held = m.AdapterNames.SelectMany((name, task) => TaskData.ReadTrain(Path.Combine(data, name)).Select(e => encoder.Encode(e, task))).ToList();
        int newRow = m.AdapterNames.Count - 1;
        var before = m.Projections.ToDictionary(p => p.Site.Key, p => p.moe_gate.detach().clone());

        var (factors, balancedBefore, balancedAfter) = NewRowCalibration.Apply(m, held, newRow, SpecialTokens.PadId(config, null), CPU, batchSize: 8);

        Assert.Equal(m.Projections.Count, factors.Count);
        Assert.Contains(factors.Values, f => f != 1.0);   // the fixture's gates leave something to calibrate
        Assert.True(balancedAfter >= balancedBefore, $"{balancedAfter} < {balancedBefore}");
        foreach (var p in m.Projections)
        {
            var old = before[p.Site.Key];
            Assert.True(p.moe_gate.narrow(0, 0, newRow).equal(old.narrow(0, 0, newRow)).all().item<bool>(), $"{p.Site.Key}: an old row changed");
            var expected = old.narrow(0, newRow, 1) * factors[p.Site.Key];
            Assert.True(p.moe_gate.narrow(0, newRow, 1).allclose(expected), $"{p.Site.Key}: the new row is not × {factors[p.Site.Key]}");
        }
    }
}
