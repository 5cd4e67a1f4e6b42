using Meteora.Generation;
using Meteora.Llama;
using Meteora.Moe;
using static TorchSharp.torch;

namespace Meteora.Tests.Generation;

/// <summary>
/// Generation's two CPU shortcuts against the plain batched path: a padded batch prefilled one row at a time, and
/// finished rows dropped from the batch while the others decode on.
/// </summary>
public class TextGeneratorTests : IClassFixture<FixtureBaseModel>
{

    private readonly LlamaForCausalLM _lm;
    public TextGeneratorTests(FixtureBaseModel m) => _lm = m.Lm;

    [Fact]
    public void RowByRowPrefillFillsTheCacheAsThePaddedBatchDoes()
    {
        using var _ = no_grad();
        var prompts = Enumerable.Range(0, 3).Select(Fixture.PromptIds).ToArray();
        int B = prompts.Length, T = prompts.Max(p => p.Length);
        Assert.True(prompts.Any(p => p.Length < T), "the fixture's prompts must differ in length for this test to pad");
        var (ids, mask) = TextGenerator.LeftPad(prompts, T, 0);
        var maskT = tensor(mask, [B, T]);
        using var batched = new KvCache(_lm.Config, B, T + 4, ScalarType.Float32, CPU);
        using var byRow = new KvCache(_lm.Config, B, T + 4, ScalarType.Float32, CPU);
        batched.SetPadding(maskT);
        byRow.SetPadding(maskT);
        var positions = (maskT.cumsum(1) - 1).clamp_min(0);                                          // (B, T)
        var expected = _lm.forward(tensor(ids, [B, T]), positions, batched, lastOnly: true);          // (B, V)
        var got = new TextGenerator(_lm).PrefillRows(prompts, T, byRow);                              // (B, V)
        TensorAssert.Close(expected, got, 1e-4, "last-position logits");
        Assert.Equal(batched.Length, byRow.Length);
        var real = maskT.to(ScalarType.Bool).view(B, 1, T, 1);                                        // padding slots hold nothing
        for (int l = 0; l < _lm.Config.NumHiddenLayers; l++)
        {
            TensorAssert.Close(batched.Keys[l].narrow(2, 0, T) * real, byRow.Keys[l].narrow(2, 0, T) * real, 1e-4, $"keys of layer {l}");
            TensorAssert.Close(batched.Values[l].narrow(2, 0, T) * real, byRow.Values[l].narrow(2, 0, T) * real, 1e-4, $"values of layer {l}");
        }
    }

    [Fact]
    public void GenerateThroughRowByRowPrefillAndDroppedRowsMatchesEachRowAlone()
    {
        // The fixture's prompts (6, 11 and 6 tokens) are below the 256-token threshold: lower it so Generate takes the path.
        var prompts = Enumerable.Range(0, 3).Select(Fixture.PromptIds).ToArray();
        var gen = new TextGenerator(_lm) { RowByRowMinLength = 2 };
        var options = new GenerationOptions { MaxNewTokens = 10 };
        var alone = prompts.Select(p => gen.Generate([p], options)[0]).ToArray();
        Assert.Equal(0, gen.RowByRowPrefills);                          // one row is never padded
        int eos = alone[0][2];                                          // row 0 stops after three tokens, and is dropped
        var steps = new List<int[]>();
        var batched = gen.Generate(prompts, options with { StopAtEos = true, EosIds = [eos] }, (_, chosen) => steps.Add(chosen.ToArray()));
        Assert.Equal(1, gen.RowByRowPrefills);
        Assert.True(gen.Compactions >= 1, "no finished row was dropped from the batch");
        for (int i = 0; i < prompts.Length; i++)
        {
            int cut = Array.IndexOf(alone[i], eos);
            Assert.Equal(cut < 0 ? alone[i] : alone[i][..(cut + 1)], batched[i]);
            // onStep sees every prompt's row on every step: its token while it runs, then −1.
            for (int s = 0; s < steps.Count; s++)
            {
                Assert.Equal(prompts.Length, steps[s].Length);
                Assert.Equal(s < batched[i].Length ? batched[i][s] : -1, steps[s][i]);
            }
        }
    }

    [Fact]
    public void PerRowRoutingKeepsTheBatchWhole()
    {
        // Row routing holds one setting per batch row: a row-by-row prefill or a dropped row would no longer fit it
        // (MeteoraLinear refuses a batch of another size), so generation keeps the padded batch as it is.
        using var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        var prompts = Enumerable.Range(0, 3).Select(Fixture.PromptIds).ToArray();
        using var rows = new RowRouting(3, m.AdapterNames.Count, m.Model.Config.NumHiddenLayers, 0, CPU);
        for (int r = 0; r < 3; r++) rows.SetAdapter(r, r % m.AdapterNames.Count);
        rows.Upload();
        m.Routing.Rows = rows;
        var gen = new TextGenerator(m.Model) { RowByRowMinLength = 2 };
        var first = gen.Generate(prompts, new GenerationOptions { MaxNewTokens = 6 });
        int eos = first[0][1];
        var stopped = gen.Generate(prompts, new GenerationOptions { MaxNewTokens = 6, StopAtEos = true, EosIds = [eos] });
        Assert.Equal(0, gen.RowByRowPrefills);
        Assert.Equal(0, gen.Compactions);
        int cut = Array.IndexOf(first[0], eos);
        Assert.Equal(first[0][..(cut + 1)], stopped[0]);
    }

    [Fact]
    public void RowsThatStopLeaveTheBatchAndTheOthersContinueUnchanged()
    {
        var prompts = Enumerable.Range(0, 3).Select(Fixture.PromptIds).ToArray();
        var gen = new TextGenerator(_lm);
        var options = new GenerationOptions { MaxNewTokens = 12 };
        var alone = prompts.Select(p => gen.Generate([p], options)[0]).ToArray();
        // Row 0's third token as EOS: row 0 stops after three tokens; the others stop wherever it first appears in theirs.
        int eos = alone[0][2];
        var stopping = options with { StopAtEos = true, EosIds = [eos] };
        var batched = gen.Generate(prompts, stopping);
        Assert.True(gen.Compactions >= 1, "no finished row was dropped from the batch");
        for (int i = 0; i < prompts.Length; i++)
        {
            int cut = Array.IndexOf(alone[i], eos);
            Assert.Equal(cut < 0 ? alone[i] : alone[i][..(cut + 1)], batched[i]);
        }
        Assert.Equal(3, batched[0].Length);
    }
}
