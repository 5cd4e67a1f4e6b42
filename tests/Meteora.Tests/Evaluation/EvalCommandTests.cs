using System.Text.Json;
using Meteora.Data;
using Meteora.Lora;
using Meteora.Tests.Training;
using Meteora.Training;
using static TorchSharp.torch;

namespace Meteora.Tests.Evaluation;

public class EvalCommandTests
{
    [Fact]
    public void PeftOracleBeatsTheBaseAndTheReportSaysSo()
    {
        using var dir = Fixture.TempDir();
        string data = dir["data"];
        ReverseDigitsTask.Write(Path.Combine(data, "rev"), train: 400, test: 40);
        File.WriteAllText(Path.Combine(data, "rev", "task.json"), """{"name":"rev","metric":"exact"}""");
        LoraTrainer.Train(Fixture.Base, Path.Combine(data, "rev"), Path.Combine(dir["adapters"], "rev"),
            new LoraConfig { R = 8, LoraAlpha = 16, LoraDropout = 0 },
            new TrainingOptions { Steps = 250, BatchSize = 16, LearningRate = 3e-3, WarmupSteps = 20, Seed = 5 }, CPU, ScalarType.Float32);

        var peft = CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "peft", "--adapters-dir", dir["adapters"], "--data", data,
            "--max-new-tokens", "8", "--out", dir["peft"]);
        Assert.Equal(0, peft.ExitCode);
        var baseRun = CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "base", "--data", data, "--max-new-tokens", "8", "--out", dir["base"]);
        Assert.Equal(0, baseRun.ExitCode);

        double Mean(string report) => JsonDocument.Parse(File.ReadAllText(Path.Combine(report, "results.json"))).RootElement.GetProperty("mean_accuracy").GetDouble();
        Assert.True(Mean(dir["peft"]) >= 0.5, $"peft accuracy {Mean(dir["peft"])}");
        Assert.Equal(0, Mean(dir["base"]));
        Assert.Contains("| rev | exact | 40 |", File.ReadAllText(Path.Combine(dir["peft"], "results.md")));
        Assert.True(File.Exists(Path.Combine(dir["peft"], "results.png")));
        var paper = CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "peft", "--adapters-dir", dir["adapters"], "--data", data,
            "--max-new-tokens", "8", "--paper-metrics", "--out", dir["paper"]);
        Assert.Equal(0, paper.ExitCode);
        Assert.Contains("| rev | paper | 40 |", File.ReadAllText(Path.Combine(dir["paper"], "results.md")));
    }

    [Fact]
    public void BadModeAndMissingOptionsAreOneLineErrors()
    {
        using var dir = Fixture.TempDir();
        ReverseDigitsTask.Write(Path.Combine(dir["data"], "rev"), train: 5, test: 2);
        CliRunner.AssertUserError(CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "bogus", "--data", dir["data"], "--out", dir["o"]), "unknown mode 'bogus'");
        CliRunner.AssertUserError(CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "peft", "--data", dir["data"], "--out", dir["o"]), "needs --adapters-dir");
        CliRunner.AssertUserError(CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "base", "--data", dir["data"], "--tasks", "nope", "--out", dir["o"]), "no task folder with test.jsonl for nope");
    }
}

public class RouteByTaskTests
{
    [Fact]
    public void RoutingEveryTokenByTaskGivesPeftOracleAnswersAndBadUseIsRefused()
    {
        using var dir = Fixture.TempDir();
        Meteora.Evaluation.TaskSuite.Write(dir["data"], trainPerTask: 5, testPerTask: 12, seed: 3, only: ["add", "reverse", "upper"]);
        string[] common = ["--model", Fixture.Base, "--data", dir["data"], "--max-new-tokens", "6", "--batch-size", "5"];
        var forced = CliRunner.Run(["eval", .. common, "--mode", "meteora", "--meteora", Fixture.Meteora, "--route-by-task", "all", "--out", dir["forced"]]);
        Assert.Equal(0, forced.ExitCode);
        var peft = CliRunner.Run(["eval", .. common, "--mode", "peft", "--adapters-dir", Path.Combine(Fixture.Root, "adapters"), "--out", dir["peft"]]);
        Assert.Equal(0, peft.ExitCode);
        var gated = CliRunner.Run(["eval", .. common, "--mode", "meteora", "--meteora", Fixture.Meteora, "--out", dir["gated"]]);
        Assert.Equal(0, gated.ExitCode);
        // The fixture's adapters answer these tasks badly (every score can be 0), so compare the answers themselves.
        string Answers(string report) => string.Join("\n", new[] { "add", "reverse", "upper" }.Select(t => File.ReadAllText(Path.Combine(report, "answers", t + ".jsonl"))));
        Assert.Equal(12 * 3, Answers(dir["peft"]).Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Equal(Answers(dir["peft"]), Answers(dir["forced"]));
        Assert.NotEqual(Answers(dir["gated"]), Answers(dir["forced"]));
        Assert.Contains("\"route_by_task\": \"all\"", File.ReadAllText(Path.Combine(dir["forced"], "results.json")));

        CliRunner.AssertUserError(CliRunner.Run(["eval", .. common, "--mode", "peft", "--adapters-dir", "x", "--route-by-task", "all", "--out", dir["e1"]]),
            "--route-by-task works with --mode meteora");
        CliRunner.AssertUserError(CliRunner.Run(["eval", .. common, "--mode", "meteora", "--meteora", Fixture.Meteora, "--route-by-task", "words", "--out", dir["e2"]]),
            "unknown scope 'words'");
        CliRunner.AssertUserError(CliRunner.Run(["eval", .. common, "--mode", "meteora", "--meteora", Fixture.Meteora, "--route-by-task", "tokens", "--out", dir["e4"]]),
            "--route-by-task tokens works on guided composite prompts");
        Meteora.Evaluation.TaskSuite.Write(dir["data2"], trainPerTask: 5, testPerTask: 2, seed: 3, only: ["sort"]);
        CliRunner.AssertUserError(CliRunner.Run(["eval", "--model", Fixture.Base, "--data", dir["data2"], "--mode", "meteora", "--meteora", Fixture.Meteora,
            "--route-by-task", "prompt", "--out", dir["e3"]]), "no adapter named 'sort'");
    }
}

public class CompositeRouteByTaskTests
{
    [Fact]
    public void GuidedCompositeLinesRoutedToTheirTaskGiveThatAdaptersOwnContinuation()
    {
        using var dir = Fixture.TempDir();
        Meteora.Evaluation.TaskSuite.Write(dir["data"], trainPerTask: 10, testPerTask: 10, seed: 2, only: ["add", "reverse", "upper"]);
        string[] tasks = ["add", "reverse", "upper"];
        var train = tasks.ToDictionary(t => t, t => TaskData.ReadTrain(Path.Combine(dir["data"], t)));
        var test = tasks.ToDictionary(t => t, t => TaskData.ReadJsonl(Path.Combine(dir["data"], t, "test.jsonl")));
        var rng = new Random(5);
        var batch = Enumerable.Range(0, 3).Select(_ => Meteora.Evaluation.CompositePrompt.Build(train, test, 3, rng)).ToList();
        using var tok = Meteora.Tokenization.HfTokenizer.Load(Fixture.Base);
        int newline = tok.Encode("\n", addSpecialTokens: false).Single();
        var eos = new HashSet<int> { 2 };
        using var mm = Meteora.Moe.MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        var calls = new List<string?>();
        var blocks = Meteora.Evaluation.CompositeEvaluator.GuidedAnswerBlocks(new Meteora.Generation.TextGenerator(mm.Model), tok, batch, newline, 4, eos,
            new Meteora.Evaluation.GuidedRouting((task, _) =>
            {
                calls.Add(task);
                mm.Routing.Forced = task is null ? null : new Meteora.Moe.ForcedRouting(mm.AdapterNames.ToList().IndexOf(task), Meteora.Moe.ForcedRoutingScope.All);
            }, PerToken: false));
        Assert.Null(calls[^1]);                                                // routing handed back to the gates at the end
        Assert.Null(mm.Routing.Forced);
        // One call per task of each line, in line order.
        var expected = Enumerable.Range(0, 3).SelectMany(i => batch.Select(b => b.Parts[i].Task).Distinct()).ToList();
        Assert.Equal(expected, calls.Take(calls.Count - 1).ToList());
        // Each line, every token routed to its task's adapter, is what PEFT with that adapter writes after the same text.
        var peft = tasks.ToDictionary(t => t, t => LoraModel.Load(Fixture.Base, Fixture.Adapter(t), CPU, ScalarType.Float32));
        try
        {
            var options = new Meteora.Generation.GenerationOptions
            {
                MaxNewTokens = 5,
                StopWhen = row => row.Count > 0 && (row[^1] == newline || eos.Contains(row[^1])),
            };
            for (int r = 0; r < batch.Count; r++)
            {
                var lines = blocks[r].Split('\n', StringSplitOptions.RemoveEmptyEntries);
                Assert.Equal(3, lines.Length);
                string before = "";
                for (int i = 0; i < 3; i++)
                {
                    var part = batch[r].Parts[i];
                    string head = $"{i + 1}. {part.Prompt}";
                    var ids = tok.Encode(batch[r].Prompt + before + head);
                    var output = new Meteora.Generation.TextGenerator(peft[part.Task]).Generate([ids], options)[0];
                    Assert.Equal(head + tok.Decode(output).Split('\n')[0], lines[i]);
                    before += lines[i] + "\n";
                }
            }
        }
        finally { foreach (var m in peft.Values) m.Dispose(); }

        // Per token: each row alone, with the task of every token it reads; the head's tokens are its part's task.
        var labelled = new List<(string? Task, IReadOnlyList<string?>? Tokens)>();
        Meteora.Evaluation.CompositeEvaluator.GuidedAnswerBlocks(new Meteora.Generation.TextGenerator(mm.Model), tok, batch, newline, 4, eos,
            new Meteora.Evaluation.GuidedRouting((task, tokens) => labelled.Add((task, tokens)), PerToken: true));
        Assert.Equal(3 * batch.Count + 1, labelled.Count);
        var (firstTask, firstTokens) = labelled[0];
        Assert.Equal(batch[0].Parts[0].Task, firstTask);
        Assert.Equal(tok.Encode(batch[0].Prompt + $"1. {batch[0].Parts[0].Prompt}").Length, firstTokens!.Count);
        Assert.Null(firstTokens[0]);                                                              // BOS
        Assert.Equal(firstTask, firstTokens[^1]);                                                 // the head's last token
        Assert.Equal(tasks.Length, firstTokens.Where(x => x is not null).Distinct().Count());    // shots and problems of every task

        using var cli = Fixture.TempDir();
        var run = CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "meteora", "--meteora", Fixture.Meteora, "--data", dir["data"],
            "--composite", "3", "--composite-guided", "--route-by-task", "all", "--composite-examples", "2", "--max-new-tokens", "4", "--out", cli["report"]);
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("\"route_by_task\": \"all\"", File.ReadAllText(Path.Combine(cli["report"], "composite-3.json")));
        Assert.Equal(0, CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "meteora", "--meteora", Fixture.Meteora, "--data", dir["data"],
            "--composite", "3", "--composite-guided", "--route-by-task", "tokens", "--composite-examples", "2", "--max-new-tokens", "4", "--out", cli["tokens"]).ExitCode);
        Assert.Contains("\"route_by_task\": \"tokens\"", File.ReadAllText(Path.Combine(cli["tokens"], "composite-3.json")));
        CliRunner.AssertUserError(CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "meteora", "--meteora", Fixture.Meteora, "--data", dir["data"],
            "--composite", "3", "--route-by-task", "all", "--out", cli["e"]), "guided composite prompts (--composite N --composite-guided)");
    }
}

public class CompositeRoutingProbeTests
{
    [Fact]
    public void TheProbeCountsTheGatesFirstChoiceAgainstEachTokensTask()
    {
        using var dir = Fixture.TempDir();
        Meteora.Evaluation.TaskSuite.Write(dir["data"], trainPerTask: 10, testPerTask: 10, seed: 4, only: ["add", "reverse", "upper"]);
        string[] tasks = ["add", "reverse", "upper"];
        using var tok = Meteora.Tokenization.HfTokenizer.Load(Fixture.Base);
        using var mm = Meteora.Moe.MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        var forced = new Meteora.Moe.ForcedRouting(0, Meteora.Moe.ForcedRoutingScope.All);
        mm.Routing.Forced = forced;                                         // the probe asks the gates, then puts this back
        var (inComposite, alone) = Meteora.Evaluation.CompositeRoutingProbe.Measure(mm, tok, dir["data"], tasks, 3, examples: 1, seed: 9);
        Assert.Same(forced, mm.Routing.Forced);
        Assert.True(inComposite.Tokens > 0 && alone.Tokens > 0);
        Assert.Equal(tasks, alone.ByTask.Keys.ToArray());
        // The "alone" half recomputed by hand: the same example's problems, each after BOS with its reference, gates' top-1.
        var train = tasks.ToDictionary(t => t, t => TaskData.ReadTrain(Path.Combine(dir["data"], t)));
        var test = tasks.ToDictionary(t => t, t => TaskData.ReadJsonl(Path.Combine(dir["data"], t, "test.jsonl")));
        var example = Meteora.Evaluation.CompositePrompt.Build(train, test, 3, new Random(9));
        mm.Routing.Forced = null;
        long n = 0, right = 0;
        foreach (var part in example.Parts)
        {
            var ids = tok.Encode(part.Prompt + " " + part.Reference);
            using var recorder = new Meteora.Moe.RoutingRecorder { RecordIndices = true };
            mm.Attach(recorder);
            using (no_grad()) mm.Forward(tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length]));
            mm.Attach(null);
            int adapter = mm.AdapterNames.ToList().IndexOf(part.Task);
            foreach (var (key, rows) in recorder.Trace())
            {
                if (mm.Projections.Single(p => p.Site.Key == key).Adapters.Ranks[adapter] == 0) continue;
                for (int j = 1; j < rows.Length; j++) { n++; if (rows[j][0] == adapter) right++; }
            }
        }
        Assert.Equal(n, alone.Tokens);
        Assert.Equal((double)right / n, alone.Agreement, 12);

        var cli = CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "meteora", "--meteora", Fixture.Meteora, "--data", dir["data"],
            "--composite", "3", "--composite-examples", "2", "--routing-probe", "--out", dir["probe"]);
        Assert.Equal(0, cli.ExitCode);
        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir["probe"], "routing-probe-3.json"))).RootElement;
        Assert.InRange(json.GetProperty("in_composite").GetProperty("Agreement").GetDouble(), 0, 1);
        CliRunner.AssertUserError(CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "meteora", "--meteora", Fixture.Meteora, "--data", dir["data"],
            "--routing-probe", "--out", dir["e"]), "--routing-probe works with --mode meteora and --composite N");
    }
}

public class LinearProbeTests
{
    [Fact]
    public void ItLearnsALinearRuleAndCannotLearnNoise()
    {
        manual_seed(3);
        var x = randn(2000, 16);
        var direction = randn(16, 3);
        var y = x.mm(direction).argmax(1);                                             // classes a linear map decides
        using (var probe = Meteora.Evaluation.LinearProbe.Fit(x.narrow(0, 0, 1500), y.narrow(0, 0, 1500), 3))
            Assert.InRange(probe.Right(x.narrow(0, 1500, 500), y.narrow(0, 1500, 500)) / 500.0, 0.9, 1.0);
        var noise = randint(0, 3, [2000], dtype: ScalarType.Int64);                  // labels x says nothing about
        using (var probe = Meteora.Evaluation.LinearProbe.Fit(x.narrow(0, 0, 1500), noise.narrow(0, 0, 1500), 3))
            Assert.InRange(probe.Right(x.narrow(0, 1500, 500), noise.narrow(0, 1500, 500)) / 500.0, 0.0, 0.45);
        Assert.Throws<ArgumentException>(() => Meteora.Evaluation.LinearProbe.Fit(x, y.narrow(0, 0, 10), 3));
        Assert.Throws<ArgumentException>(() => Meteora.Evaluation.LinearProbe.Fit(x.narrow(0, 0, 1), y.narrow(0, 0, 1), 3));   // one row: no spread
    }

    [Fact]
    public void RecordedInputsAreWhatTheGatesRead()
    {
        // The float32 fixture's gates recomputed from the recorded inputs pick the recorded top-1 at every token.
        using var mm = Meteora.Moe.MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        using var recorder = new Meteora.Moe.RoutingRecorder { RecordIndices = true, RecordInputs = true };
        mm.Attach(recorder);
        using (no_grad()) mm.Forward(tensor(new long[] { 1, 17, 40, 99, 5, 23, 61 }, [1, 7]));
        mm.Attach(null);
        var inputs = recorder.Inputs();
        foreach (var (key, rows) in recorder.Trace())
        {
            var gate = mm.Projections.Single(p => p.Site.Key == key).moe_gate;
            var top1 = inputs[key].mm(gate.detach().t()).argmax(1).data<long>().ToArray();   // (7,)
            Assert.Equal(rows.Select(r => r[0]).ToArray(), top1);
        }
    }

    [Fact]
    public void TheFittedGatesAreScoredOnTheProbesOwnDecisions()
    {
        using var dir = Fixture.TempDir();
        Meteora.Evaluation.TaskSuite.Write(dir["data"], trainPerTask: 10, testPerTask: 10, seed: 4, only: ["add", "reverse", "upper"]);
        string[] tasks = ["add", "reverse", "upper"];
        using var tok = Meteora.Tokenization.HfTokenizer.Load(Fixture.Base);
        using var mm = Meteora.Moe.MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        var (inComposite, _) = Meteora.Evaluation.CompositeRoutingProbe.Measure(mm, tok, dir["data"], tasks, 3, examples: 2, seed: 9);
        var linear = Meteora.Evaluation.CompositeRoutingProbe.FitLinearGates(mm, tok, dir["data"], tasks, 3, trainExamples: 3, testExamples: 2, seed: 9);
        // The same prompts and decisions as the probe: the gates' column is its in-composite agreement.
        Assert.Equal(inComposite.Tokens, linear.TestDecisions);
        Assert.Equal(inComposite.Agreement, linear.Gates, 12);
        foreach (var row in linear.ByLayer) Assert.Equal(inComposite.ByLayer[row.Layer], row.Gates, 12);
        Assert.True(linear.TrainDecisions > 0);
        Assert.InRange(linear.CompositeFitted, 0, 1);

        // A prompt count whose recorded inputs would not fit the memory bound is refused before it is all recorded.
        long bound = Meteora.Evaluation.CompositeRoutingProbe.MaxRecordedBytes;
        try
        {
            Meteora.Evaluation.CompositeRoutingProbe.MaxRecordedBytes = 1 << 20;
            var refused = Assert.Throws<MeteoraException>(() => Meteora.Evaluation.CompositeRoutingProbe.FitLinearGates(mm, tok, dir["data"], tasks, 3,
                trainExamples: 1000, testExamples: 2, seed: 9));
            Assert.Contains("--linear-probe 1000", refused.Message);
            Assert.Contains("use at most", refused.Message);
        }
        finally { Meteora.Evaluation.CompositeRoutingProbe.MaxRecordedBytes = bound; }

        var cli = CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "meteora", "--meteora", Fixture.Meteora, "--data", dir["data"],
            "--composite", "3", "--composite-examples", "2", "--routing-probe", "--linear-probe", "2", "--out", dir["probe"]);
        Assert.Equal(0, cli.ExitCode);
        Assert.Contains("fitted on composite prompts", File.ReadAllText(Path.Combine(dir["probe"], "routing-probe-3.md")));
        CliRunner.AssertUserError(CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "meteora", "--meteora", Fixture.Meteora, "--data", dir["data"],
            "--composite", "3", "--linear-probe", "2", "--out", dir["e"]), "--linear-probe works with --routing-probe");
    }
}

public class MultiTaskLoraTests
{
    [Fact]
    public void TrainLoraOnAFolderOfTasksUsesTheirBalancedUnion()
    {
        using var dir = Fixture.TempDir();
        Meteora.Evaluation.TaskSuite.Write(dir["data"], trainPerTask: 30, testPerTask: 5, seed: 2, only: ["add", "upper"]);
        var (train, test) = LoraTrainer.ReadData(dir["data"]);
        Assert.Equal(60, train.Count);
        Assert.Equal([0, 1], train.Select(e => e.Task).Distinct().Order().ToArray());
        Assert.Equal(10, test!.Count);
        var r = CliRunner.Run("train-lora", "--model", Fixture.Base, "--data", dir["data"], "--out", dir["lora-b"], "--steps", "3", "--batch-size", "4", "--balance");
        Assert.Equal(0, r.ExitCode);
        Assert.True(File.Exists(Path.Combine(dir["lora-b"], "adapter_model.safetensors")));
        CliRunner.AssertUserError(CliRunner.Run("train-lora", "--model", Fixture.Base, "--data", dir["o"], "--out", dir["x"], "--steps", "1"), "task folder not found");
    }
}

public class CompositeEvalTests
{
    [Fact]
    public void CompositeEvalRunsAMeteoraModelAndReportsEverySubTask()
    {
        using var dir = Fixture.TempDir();
        Meteora.Evaluation.TaskSuite.Write(dir["data"], trainPerTask: 10, testPerTask: 10, seed: 1, only: ["add", "reverse", "upper"]);
        var r = CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "meteora", "--meteora", Fixture.Meteora, "--data", dir["data"],
            "--composite", "3", "--composite-examples", "4", "--max-new-tokens", "4", "--out", dir["report"]);
        Assert.Equal(0, r.ExitCode);
        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir["report"], "composite-3.json"))).RootElement;
        Assert.Equal(4, json.GetProperty("examples").GetInt32());
        Assert.Equal(["add", "reverse", "upper"], json.GetProperty("per_task").EnumerateObject().Select(p => p.Name).Order().ToArray());
        // The CLI's numbers are the library's for the same model and settings (seed 0, batch 16 are eval's defaults).
        using (var mm = Meteora.Moe.MeteoraModel.Load(Fixture.Base, Fixture.Meteora, TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32))
        using (var tok = Meteora.Tokenization.HfTokenizer.Load(Fixture.Base))
        {
            var want = Meteora.Evaluation.CompositeEvaluator.Evaluate(mm.Model, tok, dir["data"], ["add", "reverse", "upper"], 3, 4, seed: 0, batchSize: 16, maxNewTokensPerPart: 4);
            Assert.Equal(want.AverageCorrect, json.GetProperty("average_correct").GetDouble(), 12);
            foreach (var (task, score) in want.PerTask)
                Assert.Equal(score, json.GetProperty("per_task").GetProperty(task).GetDouble(), 12);
        }
        Assert.Contains("average correct", File.ReadAllText(Path.Combine(dir["report"], "composite-3.md")));
        foreach (var f in new[] { "composite-3.png", "routing-composite-3.png", "routing-composite-3.html" })
            Assert.True(new FileInfo(Path.Combine(dir["report"], f)).Length > 0, f);
        Assert.Contains("<th>reverse</th>", File.ReadAllText(Path.Combine(dir["report"], "routing-composite-3.html")));
        CliRunner.AssertUserError(CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "peft", "--adapters-dir", "x", "--data", dir["data"],
            "--composite", "3", "--out", dir["r2"]), "--composite works with --mode base, lora-b, merge-avg, meteora or arrow");
        CliRunner.AssertUserError(CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "base", "--data", dir["data"],
            "--composite", "5", "--out", dir["r3"]), "n = 5 needs between 1 and 3 tasks");
    }
}

public class ArrowEvalTests
{
    [Fact]
    public void ArrowEvaluatesSingleTasksAndCompositesAndBadInputIsRefused()
    {
        using var dir = Fixture.TempDir();
        Meteora.Evaluation.TaskSuite.Write(dir["data"], trainPerTask: 5, testPerTask: 4, seed: 3, only: ["add", "reverse", "upper"]);
        string adapters = Path.Combine(Fixture.Root, "adapters");
        string[] common = ["--model", Fixture.Base, "--data", dir["data"], "--max-new-tokens", "4", "--batch-size", "4", "--mode", "arrow"];

        var single = CliRunner.Run(["eval", .. common, "--adapters-dir", adapters, "--out", dir["single"]]);
        Assert.Equal(0, single.ExitCode);
        Assert.Contains("Arrow over 3 adapters (add, reverse, upper), top-3, T = 1", single.Stderr);   // PEFT's default k
        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir["single"], "results.json"))).RootElement;
        Assert.Equal(["add", "reverse", "upper"], json.GetProperty("tasks").EnumerateArray().Select(t => t.GetProperty("task").GetString()!).ToArray());
        Assert.Contains("arrow", File.ReadAllText(Path.Combine(dir["single"], "results.md")));

        var topOne = CliRunner.Run(["eval", .. common, "--adapters-dir", adapters, "--top-k", "1", "--tasks", "add", "--out", dir["k1"]]);
        Assert.Equal(0, topOne.ExitCode);
        Assert.Contains("top-1", topOne.Stderr);

        var composite = CliRunner.Run(["eval", .. common, "--adapters-dir", adapters, "--top-k", "2", "--composite", "3", "--composite-examples", "2", "--out", dir["composite"]]);
        Assert.Equal(0, composite.ExitCode);
        var cj = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir["composite"], "composite-3.json"))).RootElement;
        Assert.Equal("arrow", cj.GetProperty("mode").GetString());
        Assert.Equal(2, cj.GetProperty("examples").GetInt32());
        Assert.True(new FileInfo(Path.Combine(dir["composite"], "routing-composite-3.png")).Length > 0);

        CliRunner.AssertUserError(CliRunner.Run(["eval", .. common, "--out", dir["e1"]]), "eval --mode arrow needs --adapters-dir");
        CliRunner.AssertUserError(CliRunner.Run(["eval", .. common, "--adapters-dir", adapters, "--top-k", "0", "--out", dir["e2"]]),
            "--top-k: 0 must be between 1 and the 3 adapters");
        CliRunner.AssertUserError(CliRunner.Run(["eval", .. common, "--adapters-dir", adapters, "--top-k", "4", "--composite", "2", "--out", dir["e3"]]),
            "--top-k: 4 must be between 1 and the 3 adapters");
        CliRunner.AssertUserError(CliRunner.Run(["eval", .. common, "--adapters-dir", dir["nothing"], "--out", dir["e4"]]), "adapters folder not found");
    }

    [Fact]
    public void GuidedCompositeWritesEachProblemAndTheModelOnlyItsAnswer()
    {
        using var dir = Fixture.TempDir();
        Meteora.Evaluation.TaskSuite.Write(dir["data"], trainPerTask: 10, testPerTask: 10, seed: 1, only: ["add", "reverse", "upper"]);
        var tasks = new[] { "add", "reverse", "upper" };
        var train = tasks.ToDictionary(t => t, t => Meteora.Data.TaskData.ReadTrain(Path.Combine(dir["data"], t)));
        var test = tasks.ToDictionary(t => t, t => Meteora.Data.TaskData.ReadJsonl(Path.Combine(dir["data"], t, "test.jsonl")));
        var rng = new Random(2);
        var batch = Enumerable.Range(0, 3).Select(_ => Meteora.Evaluation.CompositePrompt.Build(train, test, 3, rng)).ToList();
        using var lm = Meteora.Llama.LlamaLoader.Load(Fixture.Base, TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32);
        using var tok = Meteora.Tokenization.HfTokenizer.Load(Fixture.Base);
        int newline = tok.Encode("\n", addSpecialTokens: false).Single();
        var blocks = Meteora.Evaluation.CompositeEvaluator.GuidedAnswerBlocks(new Meteora.Generation.TextGenerator(lm), tok, batch, newline, 4, []);
        foreach (var (example, block) in batch.Zip(blocks))
        {
            var lines = block.TrimEnd('\n').Split('\n');
            Assert.Equal(3, lines.Length);                                   // one line per problem, each ended by the evaluator
            for (int i = 0; i < 3; i++) Assert.StartsWith($"{i + 1}. {example.Parts[i].Prompt}", lines[i]);
            // The parsed answers are exactly what the model wrote after each problem.
            var answers = Meteora.Evaluation.CompositePrompt.ParseAnswers(block, example.Parts.Select(p => p.Prompt).ToList());
            for (int i = 0; i < 3; i++) Assert.Equal(lines[i][$"{i + 1}. {example.Parts[i].Prompt}".Length..].Trim(), answers[i]);
        }
        var r = CliRunner.Run("eval", "--model", Fixture.Base, "--mode", "meteora", "--meteora", Fixture.Meteora, "--data", dir["data"],
            "--composite", "3", "--composite-examples", "2", "--composite-guided", "--max-new-tokens", "4", "--out", dir["report"]);
        Assert.Equal(0, r.ExitCode);
        var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir["report"], "composite-3.json"))).RootElement;
        Assert.True(json.GetProperty("guided").GetBoolean());
        Assert.Contains("Composite-3 (guided)", File.ReadAllText(Path.Combine(dir["report"], "composite-3.md")));
    }
}
