using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Meteora.Data;
using Meteora.Evaluation;
using Meteora.IO;
using Meteora.Llama;
using Meteora.Lora;
using Meteora.Moe;
using Meteora.Reporting;
using Meteora.Runtime;
using Meteora.Tokenization;
using Meteora.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Demo;

/// <summary>Everything one demo run measured.</summary>
public sealed record DemoResult(
    IReadOnlyList<string> Tasks,
    IReadOnlyDictionary<string, IReadOnlyList<TaskScore>> PerTask,
    IReadOnlyDictionary<int, IReadOnlyDictionary<string, CompositeScore>> Composite,
    IReadOnlyDictionary<string, double> StageSeconds)
{
    public double Mean(string mode) => PerTask[mode].Average(s => s.Accuracy);

    /// <summary>The trained gates' held-out gate accuracy per task (empty when not measured).</summary>
    public IReadOnlyDictionary<string, double> GateAccuracyByTask { get; init; } = new Dictionary<string, double>();

    /// <summary>
    /// Seconds of the evaluation stage by part: "per-task &lt;mode&gt;" and "composite-&lt;n&gt; [guided] &lt;mode&gt;", the twelve
    /// single adapters' composite passes together as mode "single adapters" (model loading not counted).
    /// </summary>
    public IReadOnlyDictionary<string, double> EvaluationSeconds { get; init; } = new Dictionary<string, double>();

    /// <summary>The single-task adapter with the highest composite-n average correct, and that score.</summary>
    public (string Adapter, double Score) BestSingle(int n) =>
        Composite[n].Where(kv => kv.Key.StartsWith("single:")).Select(kv => (kv.Key["single:".Length..], kv.Value.AverageCorrect))
            .MaxBy(x => x.AverageCorrect);
}

/// <summary>
/// The end-to-end demo: the built-in task suite (cached in the demo folder), a base, one LoRA per task, the LoRA-B
/// baseline (one adapter of the same rank on all tasks, balanced), MeteoRA gates trained on the union, then per-task accuracy of PEFT-oracle, MeteoRA top-1/top-2, Arrow (training-free per-token routing),
/// LoRA-B, average-merge and the base, and composite-n of MeteoRA against Arrow, LoRA-B and every single adapter.
/// Writes the report folder. By default the base, task adapters and LoRA-B are the shipped ones
/// (<c>models/meteora-demo</c>); <see cref="DemoSettings.FromScratch"/> builds them first.
/// </summary>
public sealed class DemoRunner
{
    private readonly string _dir;
    private readonly DemoSettings _s;
    private readonly Device _device;
    private readonly ScalarType _dtype;
    private readonly Action<string> _log;
    private readonly Func<string, ITrainingProgress> _progress;
    private readonly Dictionary<string, double> _stages = new();
    private IReadOnlyDictionary<string, double> _gateByTask = new Dictionary<string, double>();
    private readonly Dictionary<string, double> _evaluationSeconds = new();
    /// <summary>The shipped models' folder, or null when the demo builds its own (<see cref="DemoSettings.FromScratch"/>).</summary>
    private readonly string? _shipped;

    /// <summary>A demo in folder <paramref name="dir"/>; <paramref name="log"/> receives one line per stage and result.</summary>
    /// <param name="progress">makes the progress sink of one training stage from its title</param>
    /// <param name="shippedDir">
    /// the shipped base and adapters (<c>models/meteora-demo</c>: base/, adapters/&lt;task&gt;/, lora-b/), used unless
    /// <see cref="DemoSettings.FromScratch"/>
    /// </param>
    public DemoRunner(string dir, DemoSettings settings, Device device, ScalarType dtype, Action<string> log,
        Func<string, ITrainingProgress>? progress = null, string? shippedDir = null)
    {
        _dir = Path.GetFullPath(dir); _s = settings; _device = device; _dtype = dtype; _log = log;
        _progress = progress ?? (_ => new SilentProgress());
        if (!settings.FromScratch && settings.BuildRecipe() != DemoSettings.Full.BuildRecipe())
            throw new MeteoraException("demo: base and adapter settings (Base*, Lora*) only apply with --from-scratch; the shipped models were built with the defaults");
        if (!settings.FromScratch)
            _shipped = shippedDir is null ? throw new MeteoraException("demo: no shipped models folder given; use --from-scratch to build everything")
                : Path.GetFullPath(shippedDir);
    }

    private string TasksDir => Path.Combine(_dir, "tasks");
    private string BaseDir => Path.Combine(_shipped ?? _dir, "base");
    private string AdaptersDir => Path.Combine(_shipped ?? _dir, "adapters");
    private string LoraBDir => Path.Combine(_shipped ?? _dir, "lora-b");
    private string MeteoraDir => Path.Combine(_dir, "meteora");
    /// <summary>Where the report goes.</summary>
    public string ReportDir => Path.Combine(_dir, "report");

    public DemoResult Run(CancellationToken cancel = default)
    {
        if (File.Exists(_dir)) throw new MeteoraException($"{_dir}: is a file; the demo needs a folder to work in");
        Directory.CreateDirectory(_dir);
        var tasks = (_s.Tasks ?? TaskSuite.All.Select(t => t.Name).ToList()).Order(StringComparer.Ordinal).ToList();
        if (_shipped is not null) CheckShipped(tasks);   // before anything is written or logged: a bad model is the only line
        Stage("task data", () => MakeData(tasks));
        if (_shipped is not null)
        {
            _log($"  base, {tasks.Count} task adapters and LoRA-B from {_shipped} (SHA-256 verified)");
            if (Directory.Exists(MeteoraDir)) Directory.Delete(MeteoraDir, true);
        }
        else
        {
            Stage("base model", () => MakeBase(cancel));
            foreach (var d in new[] { AdaptersDir, LoraBDir, MeteoraDir }) if (Directory.Exists(d)) Directory.Delete(d, true);
            TrainAdapters(tasks, cancel);
        }
        TrainGates(tasks, cancel);

        var perTask = new Dictionary<string, IReadOnlyList<TaskScore>>();
        var composite = _s.CompositeSizes.ToDictionary(n => n, _ => new Dictionary<string, CompositeScore>());
        using var tokenizer = HfTokenizer.Load(BaseDir);
        Stage("evaluation", () => Evaluate(tasks, tokenizer, perTask, composite, cancel));
        var result = new DemoResult(tasks, perTask,
            composite.ToDictionary(kv => kv.Key, kv => (IReadOnlyDictionary<string, CompositeScore>)kv.Value), _stages)
        { GateAccuracyByTask = _gateByTask, EvaluationSeconds = _evaluationSeconds };
        WriteReport(result);
        return result;
    }

    /// <summary>The stamp of the task data: the shipped adapters record it, so they are only used with the data they were trained on.</summary>
    private string DataStamp(IReadOnlyList<string> tasks) =>
        $"suite 3 tasks {string.Join(',', tasks)} train {_s.TrainPerTask} test {_s.TestPerTask} seed {_s.DataSeed}";

    /// <summary>Verifies the shipped base and adapters (hashes; adapters trained on this task data).</summary>
    private void CheckShipped(IReadOnlyList<string> tasks)
    {
        string rebuild = "./meteora demo --from-scratch --device cuda (then copy base/, adapters/ and lora-b/ into models/meteora-demo; docs/RESULTS.md)";
        if (!Directory.Exists(_shipped)) throw new MeteoraException($"{_shipped}: the shipped demo models are missing; rebuild them with: {rebuild}");
        foreach (var folder in tasks.Select(t => Path.Combine(AdaptersDir, t)).Prepend(LoraBDir).Prepend(BaseDir))
        {
            if (!Directory.Exists(folder)) throw new MeteoraException($"{folder}: missing from the shipped demo models; rebuild them with: {rebuild}");
            if (!File.Exists(Path.Combine(folder, ArtifactCard.FileName)))
                throw new MeteoraException($"{folder}: no {ArtifactCard.FileName} (the shipped models are sealed); rebuild them with: {rebuild}");
            ArtifactCard.VerifyIfPresent(folder);
        }
        string stampFile = Path.Combine(AdaptersDir, ".demo-data");
        string stamp = File.Exists(stampFile) ? File.ReadAllText(stampFile).Trim() : "";
        if (stamp != DataStamp(tasks))
            throw new MeteoraException($"{stampFile}: the shipped adapters were trained on other task data ('{stamp}', this demo: '{DataStamp(tasks)}'); run with --from-scratch");
    }

    /// <summary>Share of a task's examples held out when <see cref="DemoSettings.LoraKeepBest"/> chooses the kept step.</summary>
    private const double LoraHeldOutFraction = 0.1;

    private void TrainAdapters(IReadOnlyList<string> tasks, CancellationToken cancel)
    {
        var lora = new LoraConfig { R = _s.LoraRank, LoraAlpha = 2 * _s.LoraRank, TargetRegex = _s.LoraTargetRegex, LoraDropout = 0 };
        var loraOptions = new TrainingOptions
        {
            LearningRate = _s.LoraLr, WeightDecay = 0.01, Steps = _s.LoraSteps, BatchSize = _s.LoraBatch, EvalLimit = 64,
            ResponseOnly = true,   // as train-lora's default
            // The suite's examples fit 128 tokens; 384 more for in-context text or for restated lists.
            MaxSeqLen = 128 + (_s.LoraInContextShare > 0 || _s.LoraRestateShare > 0 ? Math.Max(_s.LoraInContextChars, 384) : 0),
            ReplayRows = _s.LoraReplayRows, ReplaySeqLen = _s.LoraReplaySeqLen, LengthBuckets = _s.LengthBuckets,
            InContextShare = _s.LoraInContextShare, InContextChars = _s.LoraInContextChars,
            RestateShare = _s.LoraRestateShare, RestateItems = _s.RestateItems, RestateCopyWeight = _s.RestateCopyWeight,
        };
        Stage("task LoRAs", () =>
        {
            foreach (var t in tasks)
            {
                cancel.ThrowIfCancellationRequested();
                // With --keep-best a tenth of the examples is held out (LoraTrainer's split), the rest are trained on.
                int examples = TaskData.ReadTrain(Path.Combine(TasksDir, t)).Count;
                int steps = _s.LoraStepsFor(t, _s.LoraKeepBest ? examples - HeldOut.Count(examples, LoraHeldOutFraction) : examples);
                var r = LoraTrainer.Train(BaseDir, Path.Combine(TasksDir, t), Path.Combine(AdaptersDir, t), lora,
                    loraOptions with { Steps = steps, KeepBest = _s.LoraKeepBest, EvalEvery = _s.LoraKeepBest ? Math.Max(1, steps / 10) : 0 },
                    _device, _dtype, _progress($"LoRA {t}"), cancel, evalFraction: _s.LoraKeepBest ? LoraHeldOutFraction : 0);
                Interrupted(r.Outcome);
                _log($"  LoRA {t,-10} eval loss {r.FinalEval.GetValueOrDefault("eval_loss", double.NaN):F3} ({steps} steps, {examples} examples)");
            }
        });
        Stage("LoRA-B", () =>
        {
            var r = LoraTrainer.Train(BaseDir, TasksDir, LoraBDir, lora, loraOptions with { Steps = _s.LoraBSteps, Balance = true },
                _device, _dtype, _progress("LoRA-B (all tasks)"), cancel);
            Interrupted(r.Outcome);
            _log($"  LoRA-B eval loss {r.FinalEval.GetValueOrDefault("eval_loss", double.NaN):F3}");
        });
        AtomicFile.WriteAllText(Path.Combine(AdaptersDir, ".demo-data"), DataStamp(tasks));
        foreach (var folder in tasks.Select(t => Path.Combine(AdaptersDir, t)).Append(LoraBDir))
            ArtifactCard.Seal(folder, "./meteora demo --from-scratch --device cuda");
    }

    private void TrainGates(IReadOnlyList<string> tasks, CancellationToken cancel)
    {
        Stage("gates", () =>
        {
            var gate = new GateTrainingOptions { TopK = _s.GateTopK };
            var options = new TrainingOptions
            {
                LearningRate = _s.GateLr, WeightDecay = 0.01, ClipNorm = 0.3, Steps = _s.GateSteps, BatchSize = _s.GateBatch, Seed = _s.GateSeed,
                MaxSeqLen = _s.GateMaxSeqLen, LengthBuckets = _s.LengthBuckets, Balance = true, EvalLimit = 128,
                // Response-only LM loss, stated here rather than left to the options' default: train-gate's CLI default is
                // prompt + response, and with restated lists that gave caesar 0.62 / reverse 0.70 at top-1 against 1.00 /
                // 0.98 (docs/RESULTS.md, "Growing a checkpoint").
                ResponseOnly = true,
                InContextShare = _s.GateInContextShare, InContextChars = _s.GateInContextChars,
                RestateShare = _s.GateRestateShare, RestateItems = _s.RestateItems, RestateCopyWeight = _s.RestateCopyWeight,
            };
            var r = GateTrainer.Train(BaseDir, tasks.Select(t => (t, Path.Combine(AdaptersDir, t))).ToList(), TasksDir, MeteoraDir, gate,
                options, _device, _dtype, _progress("MeteoRA gates"), cancel);
            Interrupted(r.Outcome);
            _log($"  gates: eval gate accuracy {r.FinalEval.GetValueOrDefault("eval_gate_acc", double.NaN):P1}");
            _gateByTask = r.GateAccuracyByTask;
            _log("  gate accuracy by task: " + string.Join(", ", r.GateAccuracyByTask.Select(kv => $"{kv.Key} {kv.Value:P1}")));
        });

    }

    private static void Interrupted(TrainingOutcome outcome)
    {
        if (outcome == TrainingOutcome.Interrupted) throw new OperationCanceledException("demo interrupted");
    }

    private void Stage(string name, Action work)
    {
        var sw = Stopwatch.StartNew();
        _log($"[{name}]");
        work();
        _stages[name] = sw.Elapsed.TotalSeconds;
        _log($"[{name}] {sw.Elapsed.TotalSeconds:F0} s");
    }

    /// <summary>Cached when the stamp written after the last complete build matches these settings.</summary>
    private bool Cached(string folder, string stamp) =>
        File.Exists(Path.Combine(folder, ".demo-stamp")) && File.ReadAllText(Path.Combine(folder, ".demo-stamp")) == stamp;

    private void MakeData(IReadOnlyList<string> tasks)
    {
        string stamp = DataStamp(tasks);
        if (Cached(TasksDir, stamp)) { _log($"  cached in {TasksDir}"); return; }
        if (Directory.Exists(TasksDir)) Directory.Delete(TasksDir, true);
        TaskSuite.Write(TasksDir, _s.TrainPerTask, _s.TestPerTask, _s.DataSeed, tasks.ToList());
        AtomicFile.WriteAllText(Path.Combine(TasksDir, ".demo-stamp"), stamp);
        _log($"  {tasks.Count} tasks written to {TasksDir}");
    }

    /// <summary>The demo base's architecture.</summary>
    public static LlamaConfig BaseConfig(DemoSettings s) =>
        TinyBaseBuilder.Config(s.BaseLayers, s.BaseHidden, s.BaseIntermediate, s.BaseHeads, s.BaseKvHeads) with
        {
            MaxPositionEmbeddings = Math.Max(4096, s.BaseSeqLen),
        };

    private void MakeBase(CancellationToken cancel)
    {
        var config = BaseConfig(_s);
        string stamp = $"corpus {GenericCorpus.Version} {config.ToJson().ReplaceLineEndings(" ")} steps {_s.BaseSteps} batch {_s.BaseBatch} length {_s.BaseSeqLen} lr {_s.BaseLr} wd {_s.BaseWeightDecay} shard {_s.BaseShardMb}";
        if (Cached(BaseDir, stamp)) { _log($"  cached in {BaseDir}"); return; }
        if (Directory.Exists(BaseDir)) Directory.Delete(BaseDir, true);
        var options = new TrainingOptions
        {
            LearningRate = _s.BaseLr, WeightDecay = _s.BaseWeightDecay, Steps = _s.BaseSteps, BatchSize = _s.BaseBatch,
            MaxSeqLen = _s.BaseSeqLen, EvalLimit = 64, MinLrRatio = 0.1, WarmupRatio = 0.03,
        };
        var card = new BaseCardInfo("meteora-demo base", "meteora demo --from-scratch" + (_device.type == DeviceType.CUDA ? " --device cuda" : ""),
            MachineDescription.Describe(_device), "./meteora demo --from-scratch --device cuda");
        var r = TinyBaseBuilder.Build(BaseDir, config, options, _s.BaseSteps * _s.BaseBatch, _device, _dtype,
            _progress("base pretraining"), cancel, (long)(_s.BaseShardMb * 1e6), card);
        if (r.Outcome == TrainingOutcome.Interrupted || cancel.IsCancellationRequested) throw new OperationCanceledException("demo interrupted");
        AtomicFile.WriteAllText(Path.Combine(BaseDir, ".demo-stamp"), stamp);
        _log($"  held-out loss {r.InitialLoss:F3} → {r.FinalLoss:F3} in {r.TrainSeconds:F0} s");
        foreach (var line in r.Probes!.ToString().Split('\n')) _log("  " + line);
    }

    private void Evaluate(IReadOnlyList<string> tasks, HfTokenizer tokenizer, Dictionary<string, IReadOnlyList<TaskScore>> perTask,
        Dictionary<int, Dictionary<string, CompositeScore>> composite, CancellationToken cancel)
    {
        var sizes = _s.CompositeSizes.Where(n => n <= tasks.Count).ToList();
        var singleSizes = sizes.Intersect(_s.SingleAdapterCompositeSizes).ToList();
        T Timed<T>(string part, Func<T> work)
        {
            var sw = Stopwatch.StartNew();
            var result = work();
            _evaluationSeconds[part] = _evaluationSeconds.GetValueOrDefault(part) + sw.Elapsed.TotalSeconds;
            return result;
        }
        List<TaskScore> All(LlamaForCausalLM lm, string mode) => Timed($"per-task {mode}", () => tasks.Select(t => Score(t, lm)).ToList());
        TaskScore Score(string task, LlamaForCausalLM lm)
        {
            cancel.ThrowIfCancellationRequested();
            return TaskEvaluator.Evaluate(task, Path.Combine(TasksDir, task), lm, tokenizer, _s.EvalLimit, _s.EvalBatch, _s.MaxNewTokens);
        }
        CompositeScore Composite(LlamaForCausalLM lm, string mode, int n, bool guided = false)
        {
            cancel.ThrowIfCancellationRequested();
            return Timed($"composite-{n}{(guided ? " guided" : "")} {mode}",
                () => CompositeEvaluator.Evaluate(lm, tokenizer, TasksDir, tasks, n, _s.CompositeExamples, seed: 0, _s.EvalBatch, _s.MaxNewTokens, guided));
        }
        // Free composite prompts, and with guided the guided ones too at GuidedCompositeSizes (keyed "<mode> guided").
        void Composites(LlamaForCausalLM lm, string mode, bool guided, Action<int, CompositeScore>? onFree = null, IReadOnlyList<int>? only = null)
        {
            foreach (int n in sizes.Where(n => only is null || only.Contains(n)))
            {
                var score = Composite(lm, mode, n);
                composite[n][mode] = score;
                onFree?.Invoke(n, score);
                if (guided && _s.GuidedCompositeSizes.Contains(n)) composite[n][$"{mode} guided"] = Composite(lm, mode, n, guided: true);
            }
        }
        void Report(string mode) => _log($"  {mode,-14} mean accuracy {perTask[mode].Average(s => s.Accuracy):F3}");

        using (var lm = LlamaLoader.Load(BaseDir, _device, _dtype)) { perTask["base"] = All(lm, "base"); Report("base"); }
        perTask["peft"] = tasks.Select(t =>
        {
            using var lm = LoraModel.Load(BaseDir, Path.Combine(AdaptersDir, t), _device, _dtype);
            var score = Timed("per-task peft", () => Score(t, lm));
            foreach (int n in singleSizes) composite[n][$"single:{t}"] = Composite(lm, "single adapters", n);   // one adapter answering every sub-problem
            return score;
        }).ToList();
        Report("peft");
        using (var mm = MeteoraModel.Load(BaseDir, MeteoraDir, _device, _dtype))
        {
            foreach (int k in new[] { 1, 2 })
            {
                mm.Configure(topK: Math.Min(k, tasks.Count));
                perTask[$"meteora-top{k}"] = All(mm.Model, $"meteora-top{k}");
                Report($"meteora-top{k}");
            }
            mm.Configure(topK: Math.Min(2, tasks.Count));
            Composites(mm.Model, "meteora-top2", guided: true, (n, score) =>
            {
                if (score.First is { } first) RoutingHeatmap.WriteForAnswer(mm, tokenizer, first.Prompt, first.Output, ReportDir, n);
            });
        }
        using (var arrow = ArrowModel.Load(BaseDir, tasks.Select(t => (t, Path.Combine(AdaptersDir, t))).ToList(), _device, _dtype,
                   Math.Min(_s.ArrowTopK, tasks.Count)))
        {
            perTask["arrow"] = All(arrow.Model, "arrow");
            Report("arrow");
            Composites(arrow.Model, "arrow", guided: false, only: _s.ArrowCompositeSizes);
        }
        using (var lm = LoraModel.Load(BaseDir, LoraBDir, _device, _dtype))
        {
            perTask["lora-b"] = All(lm, "lora-b");
            Report("lora-b");
            Composites(lm, "lora-b", guided: true);
        }
        using (var merged = LoraMerger.LoadAverageMerged(BaseDir, tasks.Select(t => Path.Combine(AdaptersDir, t)).ToList(), _device, _dtype).Model)
        {
            perTask["merge-avg"] = All(merged, "merge-avg");
            Report("merge-avg");
        }
        // Where the stage's time went (the longest parts first): what to cut when the demo runs over its budget.
        _log("  evaluation time: " + string.Join(", ", _evaluationSeconds.OrderByDescending(kv => kv.Value).Select(kv => $"{kv.Key} {kv.Value:F0} s")));
    }

    /// <summary>The modes of the per-task table, in column order.</summary>
    public static readonly string[] Modes = ["peft", "meteora-top1", "meteora-top2", "arrow", "lora-b", "merge-avg", "base"];

    /// <summary>The report as Markdown: per-task accuracy by mode, then composite-n average correct.</summary>
    public static string Markdown(DemoResult r)
    {
        var sb = new StringBuilder();
        sb.AppendLine("## Per-task accuracy").AppendLine();
        sb.AppendLine("| task | metric | " + string.Join(" | ", Modes) + " |");
        sb.AppendLine("| --- | --- | " + string.Join(" | ", Modes.Select(_ => "---:")) + " |");
        for (int i = 0; i < r.Tasks.Count; i++)
            sb.AppendLine($"| {r.Tasks[i]} | {r.PerTask["peft"][i].Metric} | " + string.Join(" | ", Modes.Select(m => $"{r.PerTask[m][i].Accuracy:F2}")) + " |");
        sb.AppendLine("| **mean** | | " + string.Join(" | ", Modes.Select(m => $"**{r.Mean(m):F3}**")) + " |");
        if (r.GateAccuracyByTask.Count > 0)
            sb.AppendLine().AppendLine("Held-out gate accuracy by task (share of (projection, token) decisions on the task's adapter): " +
                string.Join(", ", r.GateAccuracyByTask.Select(kv => $"{kv.Key} {kv.Value:P1}")) + ".");
        foreach (var (n, scores) in r.Composite.OrderBy(kv => kv.Key))
        {
            if (scores.Count == 0) continue;
            sb.AppendLine().AppendLine($"## Composite-{n} (average correct, {scores.First().Value.Examples} prompts)").AppendLine();
            sb.AppendLine("| model | average correct |").AppendLine("| --- | ---: |");
            foreach (var (name, s) in scores.OrderByDescending(kv => kv.Value.AverageCorrect))
                sb.AppendLine($"| {name} | {s.AverageCorrect:F3} |");
        }
        return sb.ToString();
    }

    private void WriteReport(DemoResult r)
    {
        Directory.CreateDirectory(ReportDir);
        AtomicFile.WriteAllText(Path.Combine(ReportDir, "results.md"), "# MeteoRA demo\n\n" + Markdown(r));
        AtomicFile.WriteAllText(Path.Combine(ReportDir, "results.json"), JsonSerializer.Serialize(new
        {
            tasks = r.Tasks,
            settings = _s,
            stage_seconds = r.StageSeconds,
            evaluation_seconds = r.EvaluationSeconds,
            per_task = r.PerTask.ToDictionary(kv => kv.Key, kv => kv.Value.Select(s => new
            {
                task = s.Task, metric = s.Metric, examples = s.Examples, accuracy = s.Accuracy, exact_match = s.ExactMatch,
                contains = s.Contains, numeric = s.Numeric, paper_accuracy = s.PaperAccuracy, bleu = s.Bleu, rougeL = s.Rouge.RougeL,
            })),
            mean_accuracy = r.PerTask.ToDictionary(kv => kv.Key, kv => r.Mean(kv.Key)),
            gate_accuracy_by_task = r.GateAccuracyByTask,
            composite = r.Composite.ToDictionary(kv => $"composite-{kv.Key}", kv => kv.Value.ToDictionary(x => x.Key, x => new
            {
                average_correct = x.Value.AverageCorrect, per_task = x.Value.PerTask, examples = x.Value.Examples,
            })),
        }, new JsonSerializerOptions { WriteIndented = true }));
        var bars = Modes.Select(m => (m, r.Mean(m))).ToList();
        foreach (var (n, scores) in r.Composite.OrderBy(kv => kv.Key))
        {
            if (scores.TryGetValue("meteora-top2", out var mt)) bars.Add(($"C{n} meteora", mt.AverageCorrect));
            if (scores.TryGetValue("arrow", out var ar)) bars.Add(($"C{n} arrow", ar.AverageCorrect));
            if (scores.TryGetValue("lora-b", out var lb)) bars.Add(($"C{n} lora-b", lb.AverageCorrect));
            if (scores.Keys.Any(k => k.StartsWith("single:"))) bars.Add(($"C{n} best single", r.BestSingle(n).Score));
        }
        AccuracyChart.Write(Path.Combine(ReportDir, "results.png"), "MeteoRA demo: mean per-task accuracy and composite-n average correct", bars);
    }
}
