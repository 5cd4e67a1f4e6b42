using Meteora.Data;
using Meteora.Evaluation;
using Meteora.Llama;
using Meteora.Lora;
using Meteora.Tokenization;
using Meteora.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Meteora.Tests.Training;

public class TrainLoraTests
{
    private readonly ITestOutputHelper _out;
    public TrainLoraTests(ITestOutputHelper output) => _out = output;

    private static readonly LoraConfig Lora = new() { R = 8, LoraAlpha = 16, LoraDropout = 0.0 };

    [Fact]
    public void TrainingLowersTheLossAndLearnsTheTask()
    {
        using var dir = Fixture.TempDir();
        string data = ReverseDigitsTask.Write(dir["task"], train: 600, test: 100);
        var options = new TrainingOptions { Steps = 400, BatchSize = 16, LearningRate = 3e-3, WarmupSteps = 20, Seed = 5 };
        var result = LoraTrainer.Train(Fixture.Base, data, dir["adapter"], Lora, options, CPU, ScalarType.Float32);

        var test = TaskData.ReadJsonl(Path.Combine(data, "test.jsonl"));
        using var tok = HfTokenizer.Load(Fixture.Base);
        using var _ = no_grad();
        using var baseLm = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.Float32);
        double baseAcc = GreedyAnswers.ExactMatch(baseLm, tok, test, maxNewTokens: 8);
        using var tuned = LoraModel.Load(Fixture.Base, dir["adapter"], CPU, ScalarType.Float32);
        double tunedAcc = GreedyAnswers.ExactMatch(tuned, tok, test, maxNewTokens: 8);
        double before = result.InitialEval!["eval_loss"], after = result.FinalEval["eval_loss"];
        _out.WriteLine($"eval loss {before:F4} -> {after:F4}; exact match base {baseAcc:P1} -> adapter {tunedAcc:P1}");

        Assert.True(after < 0.5 * before, $"eval loss {before} -> {after}");
        Assert.True(tunedAcc >= baseAcc + 0.5, $"exact match {baseAcc} -> {tunedAcc}");
    }
}

public class TrainLoraResumeAndRoundTripTests
{
    private static readonly LoraConfig Lora = new() { R = 4, LoraAlpha = 8, LoraDropout = 0.1, TargetModules = ["q_proj", "v_proj", "down_proj"] };

    private static Dictionary<string, Tensor> AdapterTensors(string folder)
    {
        using var f = Meteora.IO.SafeTensorsFile.Open(Path.Combine(folder, "adapter_model.safetensors"));
        return f.Entries.Keys.ToDictionary(k => k, k => f.Load(k));
    }

    [Fact]
    public void ResumeAfterAnInterruptionEndsWithTheSameWeights()
    {
        using var dir = Fixture.TempDir();
        string data = ReverseDigitsTask.Write(dir["task"], train: 120, test: 20);
        var options = new TrainingOptions { Steps = 24, BatchSize = 4, GradAccum = 2, LearningRate = 2e-3, WarmupSteps = 3, Seed = 9, WeightDecay = 0.01 };

        var straight = LoraTrainer.Train(Fixture.Base, data, dir["straight"], Lora, options, CPU, ScalarType.Float32);
        Assert.Equal(TrainingOutcome.Completed, straight.Outcome);
        var first = LoraTrainer.Train(Fixture.Base, data, dir["resumed"], Lora, options with { StopAfter = 10 }, CPU, ScalarType.Float32);
        Assert.Equal(TrainingOutcome.Interrupted, first.Outcome);
        Assert.False(File.Exists(Path.Combine(dir["resumed"], "adapter_model.safetensors")));
        var second = LoraTrainer.Train(Fixture.Base, data, dir["resumed"], Lora, options with { Resume = true }, CPU, ScalarType.Float32);
        Assert.Equal(TrainingOutcome.Completed, second.Outcome);

        var a = AdapterTensors(dir["straight"]);
        var b = AdapterTensors(dir["resumed"]);
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var k in a.Keys) Assert.True(a[k].equal(b[k]).all().item<bool>(), $"{k} differs after resume");
        // The metrics log of the resumed run reads as one run: one train line per step.
        var lines = File.ReadAllLines(Path.Combine(dir["resumed"], "metrics.jsonl")).Where(l => l.Contains("\"train\"")).ToList();
        Assert.Equal(24, lines.Count);
    }

    [Fact]
    public void ResumeWithOtherSettingsIsRefused()
    {
        using var dir = Fixture.TempDir();
        string data = ReverseDigitsTask.Write(dir["task"], train: 40, test: 10);
        var options = new TrainingOptions { Steps = 8, BatchSize = 4, Seed = 1 };
        LoraTrainer.Train(Fixture.Base, data, dir["out"], Lora, options with { StopAfter = 3 }, CPU, ScalarType.Float32);
        var e = Assert.Throws<MeteoraException>(() =>
            LoraTrainer.Train(Fixture.Base, data, dir["out"], Lora, options with { Resume = true, LearningRate = 1e-2 }, CPU, ScalarType.Float32));
        Assert.Contains("other settings", e.Message);
    }

    [Fact]
    public void TrainedAdapterSavedAndReloadedGivesIdenticalLogits()
    {
        using var dir = Fixture.TempDir();
        string data = ReverseDigitsTask.Write(dir["task"], train: 60, test: 10);
        var config = LlamaConfig.Load(Fixture.Base);
        var sites = LoraAdapter.Sites(config).Where(Lora.Targets).Select(s => s.Key).ToHashSet();
        using var lm = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.Float32,
            LoraModel.Factory(Lora, s => sites.Contains(s.Key), ScalarType.Float32, ScalarType.Float32, CPU));
        var objective = new LoraObjective(lm, Lora);
        objective.Initialize(3);
        using var tok = HfTokenizer.Load(Fixture.Base);
        var encoder = new SequenceEncoder(tok, 64, responseOnly: true, eosId: 1);
        var train = TaskData.ReadTrain(data).Select(e => encoder.Encode(e)).ToList();
        new TrainingLoop(objective, new TrainingOptions { Steps = 10, BatchSize = 6, LearningRate = 5e-3 }, dir["adapter"], 1, CPU).Run(train, null);

        using var _ = no_grad();
        var ids = tensor(Fixture.PromptIds(1).Select(i => (long)i).ToArray(), [1, Fixture.PromptIds(1).Length]);
        lm.eval();
        var inMemory = lm.forward(ids);
        using var reloaded = LoraModel.Load(Fixture.Base, dir["adapter"], CPU, ScalarType.Float32);
        var diff = (inMemory - reloaded.forward(ids)).abs().max().item<float>();
        Assert.True(diff == 0, $"max difference {diff}");
        // Training moved B away from zero, so the adapter really changes the output.
        Assert.False(inMemory.allclose(Fixture.Tensor("base.logits.1").unsqueeze(0), 1e-3, 1e-3));
    }

    [Fact]
    public void ModelsLoadInEvalModeSoAdapterDropoutIsOff()
    {
        using var dir = Fixture.TempDir();
        string a = AdapterFolder.Copy(dir, "add");
        AdapterFolder.EditConfig(a, c => c["lora_dropout"] = 0.5);
        using var _ = no_grad();
        using var lm = LoraModel.Load(Fixture.Base, a, CPU, ScalarType.Float32);
        var ids = tensor(Fixture.PromptIds(0).Select(i => (long)i).ToArray(), [1, Fixture.PromptIds(0).Length]);
        TensorAssert.Close(Fixture.Tensor("single.add.logits.0"), lm.forward(ids)[0], 1e-3, "dropout must be off at inference");
    }

    [Fact]
    public void SavedFolderUsesPeftNamesAndConfigFields()
    {
        using var dir = Fixture.TempDir();
        string data = ReverseDigitsTask.Write(dir["task"], train: 20, test: 5);
        LoraTrainer.Train(Fixture.Base, data, dir["a"], Lora, new TrainingOptions { Steps = 2, BatchSize = 4 }, CPU, ScalarType.Float32);
        var keys = AdapterTensors(dir["a"]).Keys.Order().ToList();
        Assert.Equal(12, keys.Count);   // 2 layers × 3 targets × (A, B)
        Assert.Contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", keys);
        Assert.Contains("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight", keys);
        var cfg = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir["a"], "adapter_config.json"))).RootElement;
        Assert.Equal("LORA", cfg.GetProperty("peft_type").GetString());
        Assert.Equal("CAUSAL_LM", cfg.GetProperty("task_type").GetString());
        Assert.Equal(4, cfg.GetProperty("r").GetInt32());
        Assert.Equal(8, cfg.GetProperty("lora_alpha").GetDouble());
        Assert.Equal(["q_proj", "v_proj", "down_proj"], cfg.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()!).ToArray());
        // And our own loader accepts it against the base.
        using var adapter = LoraAdapter.Load(dir["a"], LlamaConfig.Load(Fixture.Base));
        Assert.Equal(6, adapter.Weights.Count);
    }
}

public class TrainLoraLayersOptionTests
{
    [Fact]
    public void LayersOptionAdaptsOnlyThoseLayersAndIsWrittenAsLayersToTransform()
    {
        using var dir = Fixture.TempDir();
        string data = ReverseDigitsTask.Write(dir["task"], train: 20, test: 5);
        var r = CliRunner.Run("train-lora", "--model", Fixture.Base, "--data", data, "--out", dir["a"], "--steps", "2", "--batch-size", "4",
            "--r", "4", "--targets", "q_proj,v_proj", "--layers", "1");
        Assert.Equal(0, r.ExitCode);
        using var f = Meteora.IO.SafeTensorsFile.Open(Path.Combine(dir["a"], "adapter_model.safetensors"));
        Assert.Equal(4, f.Entries.Count);   // layer 1 × (q, v) × (A, B)
        Assert.All(f.Entries.Keys, k => Assert.Contains(".layers.1.", k));
        var cfg = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir["a"], "adapter_config.json"))).RootElement;
        Assert.Equal([1], cfg.GetProperty("layers_to_transform").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        CliRunner.AssertUserError(CliRunner.Run("train-lora", "--model", Fixture.Base, "--data", data, "--out", dir["b"], "--layers", "1,x"),
            "--layers: 'x' is not a layer index");
    }

    [Fact]
    public void TargetRegexSelectsModulePathsAndIsWrittenAsThePeftString()
    {
        using var dir = Fixture.TempDir();
        string data = ReverseDigitsTask.Write(dir["task"], train: 20, test: 5);
        const string rx = @"model\.layers\.1\.self_attn\.[qk]_proj|model\.layers\.0\.mlp\.down_proj";
        var r = CliRunner.Run("train-lora", "--model", Fixture.Base, "--data", data, "--out", dir["a"], "--steps", "2", "--batch-size", "4",
            "--r", "4", "--target-regex", rx);
        Assert.Equal(0, r.ExitCode);
        using (var f = Meteora.IO.SafeTensorsFile.Open(Path.Combine(dir["a"], "adapter_model.safetensors")))
            Assert.Equal(
                ["layers.0.mlp.down_proj", "layers.1.self_attn.k_proj", "layers.1.self_attn.q_proj"],
                f.Entries.Keys.Select(k => System.Text.RegularExpressions.Regex.Match(k, @"layers\.\d+\.\w+\.\w+").Value).Distinct().Order().ToArray());
        Assert.Equal(rx, LoraConfig.Load(dir["a"]).TargetRegex);
        CliRunner.AssertUserError(CliRunner.Run("train-lora", "--model", Fixture.Base, "--data", data, "--out", dir["b"], "--target-regex", "q_proj("),
            "--target-regex: 'q_proj(' is not a valid regular expression");
        CliRunner.AssertUserError(CliRunner.Run("train-lora", "--model", Fixture.Base, "--data", data, "--out", dir["b"], "--target-regex", "q_proj",
            "--targets", "v_proj"), "give either --targets or --target-regex");
    }
}

public class TaskDataErrorTests
{
    [Fact]
    public void MalformedJsonLineNamesFileAndLine()
    {
        using var dir = Fixture.TempDir();
        string f = dir["train.jsonl"];
        File.WriteAllLines(f, ["{\"prompt\":\"a\",\"response\":\"b\"}", "", "{\"prompt\": \"a\", \"response\": "]);
        var e = Assert.Throws<MeteoraException>(() => TaskData.ReadJsonl(f));
        Assert.StartsWith($"{f}:3: malformed JSON", e.Message);
    }

    [Fact]
    public void LineWithoutTheFieldsNamesFileAndLine()
    {
        using var dir = Fixture.TempDir();
        string f = dir["train.jsonl"];
        File.WriteAllLines(f, ["{\"prompt\":\"a\",\"response\":\"b\"}", "{\"question\":\"a\",\"answer\":\"b\"}"]);
        var e = Assert.Throws<MeteoraException>(() => TaskData.ReadJsonl(f));
        Assert.StartsWith($"{f}:2: expected an object with string fields", e.Message);
    }

    [Fact]
    public void EmptyDatasetIsAnError()
    {
        using var dir = Fixture.TempDir();
        File.WriteAllText(dir["train.jsonl"], "\n\n");
        var e = Assert.Throws<MeteoraException>(() => TaskData.ReadJsonl(dir["train.jsonl"]));
        Assert.Contains("empty", e.Message);
    }

    [Fact]
    public void LongSequencesAreTruncatedAndCounted()
    {
        using var dir = Fixture.TempDir();
        File.WriteAllLines(dir["train.jsonl"], [
            "{\"prompt\":\"reverse: 1 2 3 =>\",\"response\":\" 3 2 1\"}",
            "{\"prompt\":\"reverse: 1 2 3 4 5 6 7 8 9 1 2 3 4 5 6 7 8 9 =>\",\"response\":\" 9 8 7 6 5 4 3 2 1 9 8 7 6 5 4 3 2 1\"}",
        ]);
        var progress = new RecordingProgress();
        var result = LoraTrainer.Train(Fixture.Base, dir.Path, dir["out"], new LoraConfig(), new TrainingOptions { Steps = 1, BatchSize = 2, MaxSeqLen = 16 }, CPU, ScalarType.Float32, progress);
        Assert.Equal(1, result.Truncated);
        Assert.Contains(progress.Messages, m => m.Contains("truncated 1 of 2 training sequences"));
    }

    [Fact]
    public void CliTrainLoraReportsAMalformedLine()
    {
        using var dir = Fixture.TempDir();
        File.WriteAllText(dir["train.jsonl"], "not json\n");
        var r = CliRunner.Run("train-lora", "--model", Fixture.Base, "--data", dir.Path, "--out", dir["out"], "--steps", "1");
        CliRunner.AssertUserError(r, dir["train.jsonl"] + ":1", "malformed JSON");
    }

}

public class TrainLoraRehearsalTests
{
    private static readonly LoraConfig Lora = new() { R = 8, LoraAlpha = 16, LoraDropout = 0.0 };

    /// <summary>Mean next-token loss of <paramref name="lm"/> over held-out generic documents (a seed no run trains on).</summary>
    private static double GenericLoss(LlamaForCausalLM lm, HfTokenizer tok)
    {
        using var _ = no_grad();
        var docs = new GeneratedDocuments(tok, 6, first: 0, seed: 123_456, maxSeqLen: 128, eosId: 0);
        double sum = 0;
        foreach (var d in docs)
        {
            using var scope = NewDisposeScope();
            var x = tensor(d.Ids.Select(i => (long)i).ToArray(), [1, d.Ids.Length]);
            var logits = lm.forward(x)[0];
            sum += nn.functional.cross_entropy(logits[..^1], x[0, 1..]).item<float>();
        }
        return sum / docs.Count;
    }

    [Fact]
    public void RehearsalKeepsTheAdaptedModelCloserOnGenericTextAndIsLogged()
    {
        using var dir = Fixture.TempDir();
        string data = ReverseDigitsTask.Write(dir["task"], train: 200, test: 20);
        var options = new TrainingOptions { Steps = 40, BatchSize = 8, LearningRate = 1e-2, WarmupSteps = 2, Seed = 3 };
        LoraTrainer.Train(Fixture.Base, data, dir["plain"], Lora, options, CPU, ScalarType.Float32);
        LoraTrainer.Train(Fixture.Base, data, dir["replay"], Lora, options with { ReplayRows = 2, ReplaySeqLen = 128 }, CPU, ScalarType.Float32);

        using var tok = HfTokenizer.Load(Fixture.Base);
        using var baseLm = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.Float32);
        using var plain = LoraModel.Load(Fixture.Base, dir["plain"], CPU, ScalarType.Float32);
        using var replay = LoraModel.Load(Fixture.Base, dir["replay"], CPU, ScalarType.Float32);
        double b = GenericLoss(baseLm, tok), p = GenericLoss(plain, tok), r = GenericLoss(replay, tok);
        Assert.True(r < p, $"generic-text loss: base {b:F3}, task only {p:F3}, with rehearsal {r:F3}");
        var lines = File.ReadAllLines(Path.Combine(dir["replay"], "metrics.jsonl")).Where(l => l.Contains("\"train\"")).ToList();
        Assert.Equal(40, lines.Count);
        Assert.All(lines, l => Assert.Contains("\"replay_loss\"", l));
        Assert.DoesNotContain("replay_loss", File.ReadAllText(Path.Combine(dir["plain"], "metrics.jsonl")));
    }

    [Fact]
    public void ResumeWithRehearsalEndsWithTheSameWeights()
    {
        using var dir = Fixture.TempDir();
        string data = ReverseDigitsTask.Write(dir["task"], train: 60, test: 10);
        var options = new TrainingOptions { Steps = 10, BatchSize = 4, LearningRate = 2e-3, Seed = 4, ReplayRows = 2, ReplaySeqLen = 64 };
        LoraTrainer.Train(Fixture.Base, data, dir["straight"], Lora, options, CPU, ScalarType.Float32);
        Assert.Equal(TrainingOutcome.Interrupted, LoraTrainer.Train(Fixture.Base, data, dir["resumed"], Lora, options with { StopAfter = 4 }, CPU, ScalarType.Float32).Outcome);
        var e = Assert.Throws<MeteoraException>(() => LoraTrainer.Train(Fixture.Base, data, dir["resumed"], Lora,
            options with { Resume = true, ReplayWeight = 2 }, CPU, ScalarType.Float32));
        Assert.Contains("other settings", e.Message);
        LoraTrainer.Train(Fixture.Base, data, dir["resumed"], Lora, options with { Resume = true }, CPU, ScalarType.Float32);
        using var a = Meteora.IO.SafeTensorsFile.Open(Path.Combine(dir["straight"], "adapter_model.safetensors"));
        using var b = Meteora.IO.SafeTensorsFile.Open(Path.Combine(dir["resumed"], "adapter_model.safetensors"));
        foreach (var k in a.Entries.Keys) Assert.True(a.Load(k).equal(b.Load(k)).all().item<bool>(), $"{k} differs after resume");
    }

    [Fact]
    public void RehearsalOptionsAreRangeChecked()
    {
        var e = Assert.Throws<MeteoraException>(() => new TrainingOptions { ReplayRows = -1 }.Validate());
        Assert.Contains("--replay: -1", e.Message);
        Assert.Throws<MeteoraException>(() => new TrainingOptions { ReplayWeight = 0 }.Validate());
        Assert.Throws<MeteoraException>(() => new TrainingOptions { ReplaySeqLen = 1 }.Validate());
    }
}

public class InContextExamplesTests
{
    [Fact]
    public void AShareOfExamplesFollowGenericTextCutAtALineAndContinueANumberedList()
    {
        var options = new TrainingOptions { Seed = 11, InContextShare = 0.5, InContextChars = 300 };
        int placed = 0, numbered = 0;
        for (int i = 0; i < 400; i++)
        {
            string context = InContextExamples.ContextFor(i, options);
            Assert.Equal(context, InContextExamples.ContextFor(i, options));       // a function of (seed, index)
            if (context.Length == 0) continue;
            placed++;
            var m = System.Text.RegularExpressions.Regex.Match(context, @"(?:^|\n)(\d+)\. ([^\n]*)\n(\d+)\. $");
            if (m.Success) { Assert.Equal(int.Parse(m.Groups[1].Value) + 1, int.Parse(m.Groups[3].Value)); numbered++; }
            else Assert.EndsWith("\n", context);
            Assert.True(context.Length <= 300 + 8, $"{context.Length} characters of context");
        }
        Assert.InRange(placed, 160, 240);
        Assert.True(numbered > 5, $"{numbered} contexts continue a numbered list");
        Assert.Equal("", InContextExamples.ContextFor(3, options with { InContextShare = 0 }));
        Assert.Throws<MeteoraException>(() => new TrainingOptions { InContextShare = 1.5 }.Validate());
    }

    [Fact]
    public void ContextIsInNoLossAndTheGateLossStartsAtThePrompt()
    {
        using var tok = HfTokenizer.Load(Fixture.Base);
        var example = new TaskExample("reverse: abc =>", " cba");
        string context = "some generic text\n";
        foreach (bool responseOnly in new[] { true, false })
        {
            var encoder = new SequenceEncoder(tok, 512, responseOnly, eosId: 2);
            var plain = encoder.Encode(example, task: 3);
            var placed = encoder.Encode(example, task: 3, context);
            int ctx = tok.Encode(context).Length;                  // BOS + context tokens
            Assert.Equal(0, plain.GateFrom);
            Assert.Equal(ctx, placed.GateFrom);                    // the prompt's first token
            Assert.Equal(tok.Encode(context + example.Prompt), placed.Ids[..tok.Encode(context + example.Prompt).Length]);
            Assert.All(placed.LossMask[..(ctx - 1)], m => Assert.False(m));   // no position inside the context is in the loss
            // After the context, the loss covers what the plain example's loss covers (the response, or everything).
            Assert.Equal(plain.LossTokens, placed.LossTokens);
            using var batch = TrainingBatch.Collate([placed], padId: 0, CPU);
            var gate = batch.GateMask[0].data<bool>().ToArray();
            Assert.All(gate[..ctx], g => Assert.False(g));
            Assert.All(gate[ctx..^1], g => Assert.True(g));
        }
    }
}

public class PackedSequenceTests
{
    [Fact]
    public void PackedExamplesFollowEachOtherOnLinesWithEveryTokenLabelledByItsTask()
    {
        using var tok = HfTokenizer.Load(Fixture.Base);
        var encoder = new SequenceEncoder(tok, 512, responseOnly: true, eosId: 2);
        var parts = new List<(TaskExample, int)> { (new("add: 1 + 2 =>", " 3"), 0), (new("Question: why?", "Because."), 4), (new("upper: ab =>", " AB"), 2) };
        var e = encoder.Pack(parts);
        int[] Piece(string text) => tok.Encode(text, addSpecialTokens: false);
        int[][] pieces = [tok.Encode("add: 1 + 2 =>"), Piece(" 3"), Piece("\nQuestion: why?"), Piece("Because."), Piece("\nupper: ab =>"), Piece(" AB"), [2]];
        Assert.Equal(pieces.SelectMany(p => p).ToArray(), e.Ids);       // a line per example; EOS only at the end
        int first = pieces[0].Length + pieces[1].Length, second = pieces[2].Length + pieces[3].Length;
        Assert.Equal(Enumerable.Repeat(0, first).Concat(Enumerable.Repeat(4, second)).Concat(Enumerable.Repeat(2, e.Ids.Length - first - second)), e.TokenTasks!);
        Assert.Equal(0, e.Task);
        // Response-only: the loss predicts each response, the newline after it, and the final EOS — never a prompt token.
        var predicted = Enumerable.Range(0, e.Ids.Length - 1).Where(t => e.LossMask[t]).Select(t => e.Ids[t + 1]).ToArray();
        Assert.Equal(pieces[1].Append(pieces[2][0]).Concat(pieces[3]).Append(pieces[4][0]).Concat(pieces[5]).Append(2), predicted);
        var plain = encoder.Encode(new("x =>", " y"), task: 5);
        using var batch = TrainingBatch.Collate([e, plain], padId: 0, CPU);
        Assert.Equal(e.TokenTasks!.Select(t => (long)t), batch.TokenTasks[0, ..e.Ids.Length].data<long>().ToArray());
        Assert.All(batch.TokenTasks[1, ..plain.Ids.Length].data<long>().ToArray(), t => Assert.Equal(5L, t));   // an unpacked row: its own task
    }

    [Fact]
    public void GateTrainingPacksDistinctTasksAndUsesEveryExample()
    {
        using var tok = HfTokenizer.Load(Fixture.Base);
        var encoder = new SequenceEncoder(tok, 512, responseOnly: true, eosId: 2);
        var rows = Enumerable.Range(0, 30).Select(i => (new TaskExample($"t{i % 3}: {i} =>", $" {i}"), i % 3)).ToList();
        var packed = GateTrainer.Packed(rows, pack: 3, seed: 1, encoder);
        Assert.Equal(10, packed.Count);
        foreach (var p in packed) Assert.Equal(3, p.TokenTasks!.Distinct().Count());      // three different tasks per sequence
        string all = string.Join("\n", packed.Select(p => tok.Decode(p.Ids)));
        foreach (var (ex, _) in rows) Assert.Contains(ex.Prompt + ex.Response, all);        // every example used (30 = 10 × 3)
    }
}

public class RestatedListTests
{
    [Fact]
    public void RestatedListsListTheProblemsThenRestateThemWithAnswersInTheLossEachLineLabelledByItsTask()
    {
        using var tok = HfTokenizer.Load(Fixture.Base);
        var encoder = new SequenceEncoder(tok, 512, responseOnly: true, eosId: 2);
        List<(TaskExample, int)> round = [(new("add: 1 + 2 =>", " 3"), 0), (new("Question: why\nnot?", "Because."), 4)];
        var e = encoder.Restated([round], group: 4);
        int[] Piece(string text) => tok.Encode(text, addSpecialTokens: false);
        // Multi-line prompts become one line; the answer follows its restated problem after one space.
        int[][] list = [Piece("1. add: 1 + 2 =>\n"), Piece("2. Question: why not?\n")];
        int[][] answers = [Piece("1. add: 1 + 2 => 3\n"), Piece("2. Question: why not? Because.\n")];
        Assert.Equal(tok.LeadingSpecialIds.Concat(list.SelectMany(p => p)).Concat(answers.SelectMany(p => p)).Append(2).ToArray(), e.Ids);
        Assert.Equal(4, e.Task);
        int bos = tok.LeadingSpecialIds.Count;
        // Labels: BOS takes the first line's task, then each line its own.
        int[] expectedTasks = [.. Enumerable.Repeat(0, bos + list[0].Length), .. Enumerable.Repeat(4, list[1].Length),
            .. Enumerable.Repeat(0, answers[0].Length), .. Enumerable.Repeat(4, answers[1].Length + 1)];
        Assert.Equal(expectedTasks, e.TokenTasks!);
        // Response-only: exactly the answer lines (restated problem, answer, newline) and EOS are predicted in the loss.
        var predicted = Enumerable.Range(0, e.Ids.Length - 1).Where(t => e.LossMask[t]).Select(t => e.Ids[t + 1]).ToArray();
        Assert.Equal(answers.SelectMany(p => p).Append(2).ToArray(), predicted);
        // With the loss on everything, the list lines are predicted too (BOS is never a target).
        var all = new SequenceEncoder(tok, 512, responseOnly: false, eosId: 2).Restated([round], group: 4);
        Assert.Equal(e.Ids.Length - 1 - bos + 1, all.LossTokens);
        Assert.Null(e.LossWeights);                                                   // copy weight 1: an unweighted loss
    }

    [Fact]
    public void RestatedProblemsWeighLessThanAnswersInTheLoss()
    {
        using var tok = HfTokenizer.Load(Fixture.Base);
        var encoder = new SequenceEncoder(tok, 512, responseOnly: true, eosId: 2);
        List<(TaskExample, int)> round = [(new("add: 1 + 2 =>", " 3"), 0), (new("upper: ab =>", " AB"), 1)];
        var e = encoder.Restated([round], group: 0, copyWeight: 0.25);
        int[] Piece(string text) => tok.Encode(text, addSpecialTokens: false);
        int listTokens = tok.LeadingSpecialIds.Count + Piece("1. add: 1 + 2 =>\n").Length + Piece("2. upper: ab =>\n").Length;
        // Targets in order: restated problem 1 (copy), " 3\n" (answer), restated problem 2, " AB\n", EOS.
        float[] expected = [.. Enumerable.Repeat(0.25f, Piece("1. add: 1 + 2 =>").Length), .. Enumerable.Repeat(1f, Piece(" 3\n").Length),
            .. Enumerable.Repeat(0.25f, Piece("2. upper: ab =>").Length), .. Enumerable.Repeat(1f, Piece(" AB\n").Length + 1)];
        Assert.Equal(expected, e.LossWeights![(listTokens - 1)..^1]);
        Assert.All(e.LossWeights[..(listTokens - 1)], w => Assert.Equal(0f, w));      // the list is not a target

        // The weighted LM loss is Σ w·ce / Σ w over the loss positions; a batch without weights keeps the plain mean.
        var plain = encoder.Encode(new("x =>", " y"), task: 0);
        using var batch = TrainingBatch.Collate([e, plain], padId: 0, CPU);
        using var logits = randn([2, batch.Ids.shape[1], 1024], generator: new Generator(5));   // more ids than the fixture's vocabulary
        float got = LanguageModelLoss.CrossEntropy(logits, batch.Labels, batch.LossWeights).item<float>();
        using var logp = nn.functional.log_softmax(logits, -1);
        double num = 0, den = 0;
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < batch.Ids.shape[1]; t++)
            {
                long label = batch.Labels[b, t].item<long>();
                if (label == TrainingBatch.IgnoreIndex) continue;
                double w = b == 0 ? e.LossWeights[t] : 1;                                  // a row without weights weighs 1
                num -= w * logp[b, t, label].item<float>(); den += w;
            }
        Assert.Equal(num / den, got, 4);
        using var unweighted = TrainingBatch.Collate([plain], padId: 0, CPU);
        Assert.Null(unweighted.LossWeights);
    }

    [Fact]
    public void LeadingRoundsAreDroppedToFitTheMaximumLength()
    {
        using var tok = HfTokenizer.Load(Fixture.Base);
        List<(TaskExample, int)> Round(int k) => [(new($"first {k} =>", " a"), 0), (new($"second {k} =>", " b"), 1)];
        var full = new SequenceEncoder(tok, 4096, responseOnly: true, eosId: 2).Restated([Round(1), Round(2), Round(3)], 0);
        int lastRound = new SequenceEncoder(tok, 4096, responseOnly: true, eosId: 2).Restated([Round(3)], 0).Ids.Length;
        var cut = new SequenceEncoder(tok, lastRound + 5, responseOnly: true, eosId: 2).Restated([Round(1), Round(2), Round(3)], 0);
        Assert.False(cut.Truncated);
        Assert.Equal(lastRound, cut.Ids.Length);                                  // rounds 1 and 2 dropped, round 3 whole
        Assert.Contains("first 3 => a", tok.Decode(cut.Ids));
        Assert.DoesNotContain("first 2", tok.Decode(cut.Ids));
        Assert.True(full.Ids.Length > cut.Ids.Length);
        var tooShort = new SequenceEncoder(tok, 10, responseOnly: true, eosId: 2).Restated([Round(3)], 0);
        Assert.True(tooShort.Truncated);
        Assert.Equal(10, tooShort.Ids.Length);
    }

    [Fact]
    public void AShareOfExamplesIsRestatedBesideOtherTasksWithTheTargetInTheLastRoundDeterministically()
    {
        var pool = Enumerable.Range(0, 300).Select(i => (new TaskExample($"t{i % 4}: {i} =>", $" {i}"), i % 4)).ToList();
        var options = new TrainingOptions { RestateShare = 0.5, RestateItems = 3, Seed = 3 };
        var chosen = Enumerable.Range(0, pool.Count).Select(i => (i, RestatedLists.RoundsFor(i, pool, options))).Where(x => x.Item2 is not null).ToList();
        Assert.InRange(chosen.Count, 110, 190);                                       // about half
        foreach (var (i, rounds) in chosen)
        {
            Assert.InRange(rounds!.Count, 1, RestatedLists.MaxRounds);
            Assert.All(rounds, r => Assert.InRange(r.Count, 2, 3));
            Assert.Contains(pool[i], rounds[^1]);                                      // the example it was built for, in the last round
            Assert.All(rounds, r => Assert.Equal(r.Count, r.Select(x => x.Task).Distinct().Count()));   // four tasks: distinct per round
        }
        Assert.Equal(chosen.Select(c => c.i), Enumerable.Range(0, pool.Count).Where(i => RestatedLists.RoundsFor(i, pool, options) is not null));
        Assert.Null(RestatedLists.RoundsFor(0, pool, options with { RestateShare = 0 }));
        Assert.Throws<MeteoraException>(() => (options with { RestateShare = 1.5 }).Validate());
        Assert.Throws<MeteoraException>(() => (options with { RestateItems = 1 }).Validate());
    }
}
