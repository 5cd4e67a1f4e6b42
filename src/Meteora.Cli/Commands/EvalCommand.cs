using System.CommandLine;
using Meteora.Evaluation;
using Meteora.Llama;
using Meteora.Lora;
using Meteora.Moe;
using Meteora.Tokenization;

namespace Meteora.Cli.Commands;

/// <summary>
/// <c>eval --model DIR --mode base|peft|meteora|merge-avg|lora-b|arrow --data DATADIR --out REPORTDIR [...]</c>: per-task accuracy of
/// greedy answers on each task's test.jsonl, as results.json and results.md. peft uses
/// <c>--adapters-dir/&lt;task&gt;</c> for each task (the oracle), lora-b one <c>--adapter</c> for all tasks, meteora
/// a <c>--meteora</c> checkpoint, arrow every adapter in <c>--adapters-dir</c> routed per token by Arrow.
/// </summary>
public static class EvalCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var model = new Option<string>("--model") { Description = "base model folder", Required = true };
        var mode = new Option<string>("--mode") { Description = "base, peft (the right adapter per task), meteora, merge-avg (all adapters averaged into the base), lora-b (one adapter for all tasks) or arrow (all adapters, routed per token from their own weights: the Arrow baseline)", Required = true };
        var meteora = new Option<string?>("--meteora") { Description = "MeteoRA checkpoint (mode meteora)" };
        var adaptersDir = new Option<string?>("--adapters-dir") { Description = "folder of adapters named like the tasks (mode peft), of the adapters to average (mode merge-avg), or of the adapters Arrow routes between (mode arrow)" };
        var adapter = new Option<string?>("--adapter") { Description = "one adapter for every task (mode lora-b)" };
        var data = new Option<string>("--data") { Description = "folder of task folders (test.jsonl, optional task.json)", Required = true };
        var tasks = new Option<string?>("--tasks") { Description = "comma-separated subset of tasks" };
        var limit = new Option<int>("--limit") { Description = "at most N test examples per task", DefaultValueFactory = _ => 100 };
        var batch = new Option<int>("--batch-size") { Description = "prompts generated together", DefaultValueFactory = _ => 16 };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "answer length limit", DefaultValueFactory = _ => 32 };
        var topK = new Option<int?>("--top-k") { Description = "MeteoRA or Arrow top-k (default: the checkpoint's; Arrow: PEFT's 3, or the adapter count when smaller)" };
        var temperature = new Option<double?>("--temperature") { Description = "MeteoRA or Arrow routing temperature (default: the checkpoint's; Arrow: 1)" };
        var output = new Option<string>("--out") { Description = "report folder", Required = true };
        var composite = new Option<int?>("--composite") { Description = "evaluate composite-n prompts (n sub-problems from different tasks) instead of single tasks" };
        var compositeExamples = new Option<int>("--composite-examples") { Description = "composite prompts to evaluate", DefaultValueFactory = _ => 50 };
        var seed = new Option<int>("--seed") { Description = "seed for building composite prompts", DefaultValueFactory = _ => 0 };
        var guided = new Option<bool>("--composite-guided") { Description = "composite: the evaluator writes each answer line's number and problem, the model completes only the answers (default: the model writes the whole answer block)" };
        var paper = new Option<bool>("--paper-metrics") { Description = "accuracy as the original MeteoRA code's \"fuzzy\" mode computes it (the lower-cased reference contained in the stripped, lower-cased answer)" };
        var routingProbe = new Option<bool>("--routing-probe") { Description = "mode meteora with --composite N, diagnostic: no generation; how often the gates' first choice is each token's own task on the answer lines of teacher-forced composite prompts and on the same problems alone (routing-probe-N.json)" };
        var linearProbe = new Option<int?>("--linear-probe") { Description = "with --routing-probe: also fit a linear gate per projection on N teacher-forced composite prompts from the training split (and one on their problems alone) and score both beside the gates on the probe's prompts: can any linear gate on this base route these tokens?" };
        var routeByTask = new Option<string?>("--route-by-task") { Description = "mode meteora, diagnostic: route all, prompt or answer tokens to the adapter named like the task instead of asking the gates (all = PEFT-oracle computed through the MeteoRA model); with --composite-guided, to each line's task while the model completes that line, or tokens: every token to its own line's task" };
        var cmd = new Command("eval", "Per-task accuracy of base, PEFT-oracle, LoRA-B, average merge, Arrow or MeteoRA on task data")
            { model, mode, meteora, adaptersDir, adapter, data, tasks, limit, batch, maxNew, topK, temperature, output, paper, composite, compositeExamples, seed, guided, routeByTask, routingProbe, linearProbe };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            string baseFolder = p.GetValue(model)!, dataFolder = p.GetValue(data)!, m = p.GetValue(mode)!;
            if (!Directory.Exists(dataFolder)) throw new MeteoraException($"{dataFolder}: data folder not found");
            int n = p.GetValue(limit), b = p.GetValue(batch), maxTokens = p.GetValue(maxNew);
            if (n < 1 || b < 1 || maxTokens < 1) throw new MeteoraException("eval: --limit, --batch-size and --max-new-tokens must be ≥ 1");
            var names = Directory.GetDirectories(dataFolder).Where(d => File.Exists(Path.Combine(d, "test.jsonl")))
                .Select(d => Path.GetFileName(d)!).Order(StringComparer.Ordinal).ToList();
            if (p.GetValue(tasks) is { } subset)
            {
                var wanted = subset.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
                var missing = wanted.Except(names).ToList();
                if (missing.Count > 0) throw new MeteoraException($"{dataFolder}: no task folder with test.jsonl for {string.Join(", ", missing)}");
                names = wanted.ToList();
            }
            if (names.Count == 0) throw new MeteoraException($"{dataFolder}: no task folders with test.jsonl");

            // "tokens" (guided composite only): every token of a line to its own task, generated tokens to the line's task.
            bool perToken = p.GetValue(routeByTask) == "tokens";
            if (perToken && (p.GetValue(composite) is null || !p.GetValue(guided)))
                throw new MeteoraException("--route-by-task tokens works on guided composite prompts (--composite N --composite-guided)");
            ForcedRoutingScope? forcedScope = p.GetValue(routeByTask) is { } scopeText ? perToken ? ForcedRoutingScope.All : ForcedRouting.ParseScope(scopeText) : null;
            if (forcedScope is not null && (m != "meteora" || p.GetValue(composite) is not null && !p.GetValue(guided)))
                throw new MeteoraException("--route-by-task works with --mode meteora, on single tasks or guided composite prompts (--composite N --composite-guided)");
            using var tokenizer = HfTokenizer.Load(baseFolder);
            if (p.GetValue(routingProbe))
            {
                if (m != "meteora" || p.GetValue(composite) is not { } pn)
                    throw new MeteoraException("--routing-probe works with --mode meteora and --composite N");
                return RunRoutingProbe(ctx, baseFolder, dataFolder, names, pn, p.GetValue(compositeExamples), p.GetValue(seed),
                    p.GetValue(meteora) ?? throw new MeteoraException("eval --mode meteora needs --meteora"), p.GetValue(topK), p.GetValue(temperature), p.GetValue(output)!, tokenizer,
                    p.GetValue(linearProbe));
            }
            if (p.GetValue(linearProbe) is not null) throw new MeteoraException("--linear-probe works with --routing-probe");
            if (p.GetValue(composite) is { } cn)
                return RunComposite(ctx, m, baseFolder, dataFolder, names, cn, p.GetValue(compositeExamples), p.GetValue(seed), b, maxTokens,
                    p.GetValue(adapter), p.GetValue(adaptersDir), p.GetValue(meteora), p.GetValue(topK), p.GetValue(temperature), p.GetValue(output)!, tokenizer, p.GetValue(guided),
                    forcedScope, perToken);
            var scores = new List<TaskScore>();
            void Run(string task, LlamaForCausalLM lm)
            {
                var s = TaskEvaluator.Evaluate(task, Path.Combine(dataFolder, task), lm, tokenizer, n, b, maxTokens);
                if (p.GetValue(paper)) s = s with { Metric = "paper", Accuracy = s.PaperAccuracy };
                scores.Add(s);
                ctx.Err.WriteLine($"  {task,-12} {s.Metric,-8} accuracy {s.Accuracy:F3} ({s.Examples} examples)");
            }
            if (m == "peft")
            {
                string dir = p.GetValue(adaptersDir) ?? throw new MeteoraException("eval --mode peft needs --adapters-dir");
                foreach (var t in names)
                {
                    using var lm = LoraModel.Load(baseFolder, Path.Combine(dir, t), ctx.Device, ctx.DType);
                    Run(t, lm);
                }
            }
            else
            {
                using var loaded = LoadOneModel(ctx, m, baseFolder, p.GetValue(adapter), p.GetValue(adaptersDir), p.GetValue(meteora), p.GetValue(topK), p.GetValue(temperature))
                    ?? throw new MeteoraException($"--mode: unknown mode '{m}' (base, peft, meteora, merge-avg, lora-b, arrow)");
                // Every task's adapter is looked up before any evaluation, so a missing one fails at once.
                var forced = forcedScope is { } fs && loaded.Meteora is { } mm ? names.ToDictionary(t => t, t => new ForcedRouting(AdapterFor(mm, t), fs)) : null;
                foreach (var t in names)
                {
                    if (forced is not null) loaded.Meteora!.Routing.Forced = forced[t];
                    Run(t, loaded.Lm);
                }
            }
            string outDir = p.GetValue(output)!;
            EvaluationReport.Write(outDir, m, scores, new Dictionary<string, string>
            {
                ["model"] = baseFolder, ["data"] = dataFolder, ["limit"] = n.ToString(), ["max_new_tokens"] = maxTokens.ToString(),
                ["route_by_task"] = forcedScope?.ToString().ToLowerInvariant() ?? "no",
            });
            Meteora.Reporting.AccuracyChart.Write(Path.Combine(outDir, "results.png"), $"{m}: accuracy per task", scores.Select(x => (x.Task, x.Accuracy)).ToList());
            ctx.Out.Write(EvaluationReport.Markdown(m, scores));
            ctx.Err.WriteLine($"report written to {outDir} (results.json, results.md, results.png)");
            return 0;
        });
        return cmd;
    }

    /// <summary>--routing-probe: the gates' top-1 against each token's task, in composite prompts and alone (a diagnostic).</summary>
    private static int RunRoutingProbe(CliContext ctx, string baseFolder, string dataFolder, List<string> names, int n, int examples, int seed,
        string meteora, int? topK, double? temperature, string outDir, HfTokenizer tokenizer, int? linearProbe)
    {
        if (examples < 1) throw new MeteoraException("--composite-examples must be ≥ 1");
        if (linearProbe is < 1 or > 10_000) throw new MeteoraException($"--linear-probe: {linearProbe} training prompts (1…10000)");
        using var mm = MeteoraModel.Load(baseFolder, meteora, ctx.Device, ctx.DType);
        mm.Configure(topK: topK, temperature: temperature);
        var (inComposite, alone) = CompositeRoutingProbe.Measure(mm, tokenizer, dataFolder, names, n, examples, seed);
        LinearProbeResult? linear = linearProbe is { } trainPrompts
            ? CompositeRoutingProbe.FitLinearGates(mm, tokenizer, dataFolder, names, n, trainPrompts, examples, seed, ctx.Err.WriteLine) : null;
        Directory.CreateDirectory(outDir);
        Meteora.IO.AtomicFile.WriteAllText(Path.Combine(outDir, $"routing-probe-{n}.json"), CliJson.Serialize(new
        {
            n, examples, seed, in_composite = inComposite, alone, linear_probe = linear,
        }, indented: true));
        var md = new System.Text.StringBuilder($"# Routing probe, composite-{n}: gates' top-1 = the token's task\n\n| | decisions | agreement |\n| --- | ---: | ---: |\n");
        md.AppendLine($"| answer lines in composite prompts | {inComposite.Tokens} | {inComposite.Agreement:P1} |");
        md.AppendLine($"| the same problems alone | {alone.Tokens} | {alone.Agreement:P1} |");
        md.AppendLine("\n| layer | in composite | alone |\n| ---: | ---: | ---: |");
        foreach (var layer in inComposite.ByLayer.Keys.Union(alone.ByLayer.Keys).Order())
            md.AppendLine($"| {layer} | {inComposite.ByLayer.GetValueOrDefault(layer, double.NaN):P1} | {alone.ByLayer.GetValueOrDefault(layer, double.NaN):P1} |");
        md.AppendLine("\n| task | in composite | alone |\n| --- | ---: | ---: |");
        foreach (var task in inComposite.ByTask.Keys.Union(alone.ByTask.Keys).Order(StringComparer.Ordinal))
            md.AppendLine($"| {task} | {inComposite.ByTask.GetValueOrDefault(task, double.NaN):P1} | {alone.ByTask.GetValueOrDefault(task, double.NaN):P1} |");
        if (linear is not null)
        {
            md.AppendLine($"\n## Linear gates fitted on this base ({linear.TrainPrompts} composite prompts from the training split, {linear.TrainDecisions} decisions)\n");
            md.AppendLine("Share of the answer lines' decisions above whose task each router picks first.\n");
            md.AppendLine("| layer | decisions | fitted on composite prompts | fitted on the problems alone | the gates |\n| ---: | ---: | ---: | ---: | ---: |");
            foreach (var row in linear.ByLayer)
                md.AppendLine($"| {row.Layer} | {row.Decisions} | {row.CompositeFitted:P1} | {row.AloneFitted:P1} | {row.Gates:P1} |");
            md.AppendLine($"| all | {linear.TestDecisions} | {linear.CompositeFitted:P1} | {linear.AloneFitted:P1} | {linear.Gates:P1} |");
        }
        Meteora.IO.AtomicFile.WriteAllText(Path.Combine(outDir, $"routing-probe-{n}.md"), md.ToString());
        ctx.Out.Write(md.ToString());
        ctx.Err.WriteLine($"report written to {outDir} (routing-probe-{n}.json, routing-probe-{n}.md)");
        return 0;
    }

    /// <summary>The gate index of the adapter named like <paramref name="task"/> (for --route-by-task).</summary>
    private static int AdapterFor(MeteoraModel mm, string task)
    {
        int index = mm.AdapterNames.ToList().IndexOf(task);
        return index >= 0 ? index
            : throw new MeteoraException($"--route-by-task: the checkpoint has no adapter named '{task}' (it has {string.Join(", ", mm.AdapterNames)})");
    }

    /// <summary>
    /// The one model that answers every task in modes base, lora-b (one --adapter), merge-avg, meteora and arrow; null
    /// for other modes (peft loads a model per task).
    /// </summary>
    private static LoadedModel? LoadOneModel(CliContext ctx, string mode, string baseFolder, string? adapter, string? adaptersDir,
        string? meteora, int? topK, double? temperature)
    {
        switch (mode)
        {
            case "base":
                return new LoadedModel { Lm = LlamaLoader.Load(baseFolder, ctx.Device, ctx.DType) };
            case "lora-b":
                string one = adapter ?? throw new MeteoraException("eval --mode lora-b needs --adapter");
                return new LoadedModel { Lm = LoraModel.Load(baseFolder, one, ctx.Device, ctx.DType) };
            case "merge-avg":
            {
                string dir = adaptersDir ?? throw new MeteoraException("eval --mode merge-avg needs --adapters-dir");
                var folders = LoraAdapter.FoldersIn(dir);
                var (lm, changed) = LoraMerger.LoadAverageMerged(baseFolder, folders, ctx.Device, ctx.DType);
                ctx.Err.WriteLine($"average-merged {folders.Count} adapters into {changed} projections");
                return new LoadedModel { Lm = lm };
            }
            case "meteora":
                string mdir = meteora ?? throw new MeteoraException("eval --mode meteora needs --meteora");
                var mm = MeteoraModel.Load(baseFolder, mdir, ctx.Device, ctx.DType);
                try { mm.Configure(topK, temperature); }
                catch { mm.Dispose(); throw; }
                return new LoadedModel { Lm = mm.Model, Meteora = mm };
            case "arrow":
            {
                string dir = adaptersDir ?? throw new MeteoraException("eval --mode arrow needs --adapters-dir");
                var library = LoraAdapter.FoldersIn(dir).Select(f => (Path.GetFileName(f), f)).ToList();
                int k = topK ?? Math.Min(ArrowModel.DefaultTopK, library.Count);
                if (k < 1 || k > library.Count) throw new MeteoraException($"--top-k: {k} must be between 1 and the {library.Count} adapters in {dir}");
                var arrow = ArrowModel.Load(baseFolder, library, ctx.Device, ctx.DType, k, temperature ?? 1.0);
                ctx.Err.WriteLine($"Arrow over {library.Count} adapters ({string.Join(", ", arrow.AdapterNames)}), top-{k}, T = {arrow.Routing.Temperature:G}");
                return new LoadedModel { Lm = arrow.Model, Meteora = arrow.Meteora };
            }
            default:
                return null;
        }
    }

    /// <summary>Composite-n: one model (base, lora-b with --adapter, merge-avg, meteora or arrow) answers n sub-problems per prompt.</summary>
    private static int RunComposite(CliContext ctx, string mode, string baseFolder, string dataFolder, List<string> names,
        int n, int examples, int seed, int batch, int maxTokens, string? adapter, string? adaptersDir, string? meteora, int? topK, double? temperature,
        string outDir, HfTokenizer tokenizer, bool guided, ForcedRoutingScope? forcedScope, bool perToken)
    {
        if (examples < 1) throw new MeteoraException("--composite-examples must be ≥ 1");
        using var loaded = LoadOneModel(ctx, mode, baseFolder, adapter, adaptersDir, meteora, topK, temperature)
            ?? throw new MeteoraException($"--composite works with --mode base, lora-b, merge-avg, meteora or arrow (one model for every sub-problem), not '{mode}'");
        // --route-by-task on guided composite prompts: while the model completes line i, the scope's tokens go to line i's
        // task adapter (every task's adapter looked up first, so a missing one fails at once).
        // With "tokens", every token of the text the model reads goes to its own line's task (the gates route the rest).
        GuidedRouting? routing = null;
        if (forcedScope is { } scope && loaded.Meteora is { } forcedModel)
        {
            var index = names.ToDictionary(t => t, t => AdapterFor(forcedModel, t));
            routing = new GuidedRouting((task, tokenTasks) => forcedModel.Routing.Forced = task is null ? null
                : new ForcedRouting(index[task], scope, tokenTasks?.Select(x => x is null ? -1 : index.TryGetValue(x, out int a) ? a : AdapterFor(forcedModel, x)).ToArray()),
                perToken);
        }
        var score = CompositeEvaluator.Evaluate(loaded.Lm, tokenizer, dataFolder, names, n, examples, seed, batch, maxTokens, guided, routing);
        if (loaded.Meteora is { } mm && score.First is { } first) Meteora.Reporting.RoutingHeatmap.WriteForAnswer(mm, tokenizer, first.Prompt, first.Output, outDir, n,
            mode == "arrow" ? "Arrow" : "MeteoRA");
        Directory.CreateDirectory(outDir);
        string routed = perToken ? ", every token routed to its own line's task" : forcedScope is { } fsc ? $", {fsc.ToString().ToLowerInvariant()} tokens routed to each line's task" : "";
        var md = new System.Text.StringBuilder($"# Composite-{n}{(guided ? " (guided)" : "")}: {mode}{routed}\n\n| task | accuracy |\n| --- | ---: |\n");
        foreach (var (task, acc) in score.PerTask.OrderBy(kv => kv.Key, StringComparer.Ordinal)) md.AppendLine($"| {task} | {acc:F3} |");
        Meteora.Reporting.AccuracyChart.Write(Path.Combine(outDir, $"composite-{n}.png"), $"composite-{n} ({mode}): accuracy per sub-task",
            score.PerTask.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => (kv.Key, kv.Value)).ToList());
        md.AppendLine($"| **average correct** | **{score.AverageCorrect:F3}** |");
        Meteora.IO.AtomicFile.WriteAllText(Path.Combine(outDir, $"composite-{n}.md"), md.ToString());
        Meteora.IO.AtomicFile.WriteAllText(Path.Combine(outDir, $"composite-{n}.json"), CliJson.Serialize(new
        {
            mode, n, guided, route_by_task = perToken ? "tokens" : forcedScope?.ToString().ToLowerInvariant() ?? "no", examples = score.Examples, seed,
            per_task = score.PerTask, average_correct = score.AverageCorrect,
        }, indented: true));
        ctx.Out.Write(md.ToString());
        ctx.Err.WriteLine($"report written to {outDir} (composite-{n}.json, composite-{n}.md)");
        return 0;
    }
}
