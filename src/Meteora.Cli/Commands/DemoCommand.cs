using System.CommandLine;
using System.Diagnostics;
using Meteora.Demo;

namespace Meteora.Cli.Commands;

/// <summary>
/// <c>demo [--dir DIR] [--quick]</c>: the whole pipeline from nothing — task data and tiny base (cached in DIR), one
/// LoRA per task, LoRA-B, gate training, per-task and composite evaluation — then the table and the report folder.
/// </summary>
public static class DemoCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var dir = new Option<string>("--dir") { Description = "working folder: cached data and base, adapters, checkpoints, report", DefaultValueFactory = _ => "meteora-demo" };
        var quick = new Option<bool>("--quick") { Description = "smoke run of the pipeline from nothing on three tasks, a tiny base and a few steps of everything (about a minute)" };
        var scratch = new Option<bool>("--from-scratch") { Description = "pretrain the base and train the task LoRAs and LoRA-B here instead of loading the shipped ones (meant for --device cuda: about ten minutes on one H200)" };
        var shipped = new Option<string?>("--shipped") { Description = "folder of the shipped demo models (default: models/meteora-demo of this repository)" };
        var settingsFile = new Option<string?>("--settings") { Description = "JSON file overriding demo settings by name (e.g. {\"BaseLayers\": 12}); see DemoSettings" };
        var cmd = new Command("demo", "Train MeteoRA gates over the shipped base and task LoRAs (or build everything with --from-scratch), evaluate every mode and write a report") { dir, quick, scratch, shipped, settingsFile };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var settings = p.GetValue(quick) ? DemoSettings.Quick : DemoSettings.Full;
            if (p.GetValue(settingsFile) is { } file) settings = DemoSettings.Load(file, settings);
            if (p.GetValue(scratch)) settings = settings with { FromScratch = true };
            string? shippedDir = settings.FromScratch ? null : p.GetValue(shipped) ?? FindShipped()
                ?? throw new MeteoraException("demo: models/meteora-demo (the shipped base and adapters) not found beside the working folder or the program; pass --shipped DIR or use --from-scratch");
            string folder = p.GetValue(dir)!;
            if (p.GetValue(quick) && p.GetResult(dir) is null or { Implicit: true }) folder += "-quick";   // never mix with the full run's cache
            bool interactive = ctx.Err == Console.Error && !Console.IsErrorRedirected;
            using var ctrlC = new CtrlC(ctx.Err);
            var runner = new DemoRunner(folder, settings, ctx.Device, ctx.DType, line => { ctx.Err.WriteLine(line); ctx.Err.Flush(); },
                title => { ctx.Err.WriteLine($"  {title}"); return new ConsoleProgress(ctx.Err, interactive, "loss", "lm_loss", "gate_acc"); },
                shippedDir);
            var sw = Stopwatch.StartNew();
            DemoResult result;
            try { result = runner.Run(ctrlC.Token); }
            catch (OperationCanceledException) { ctx.Err.WriteLine("demo interrupted; run it again to start over (task data and base stay cached)"); return 130; }
            ctx.Out.Write(DemoRunner.Markdown(result));
            ctx.Out.WriteLine();
            ctx.Out.WriteLine($"PEFT-oracle mean {result.Mean("peft"):F3}; MeteoRA top-1 {result.Mean("meteora-top1"):F3}, top-2 {result.Mean("meteora-top2"):F3}; Arrow {result.Mean("arrow"):F3}; LoRA-B {result.Mean("lora-b"):F3}");
            foreach (int n in result.Composite.Keys.Order())
                if (result.Composite[n].TryGetValue("meteora-top2", out var m) && result.Composite[n].TryGetValue("lora-b", out var b))
                {
                    string arrow = result.Composite[n].TryGetValue("arrow", out var a) ? $", Arrow {a.AverageCorrect:F3}" : "";
                    string single = result.Composite[n].Keys.Any(k => k.StartsWith("single:")) && result.BestSingle(n) is var (adapter, score)
                        ? $", best single adapter ({adapter}) {score:F3}" : "";
                    string guided = result.Composite[n].TryGetValue("meteora-top2 guided", out var mg) && result.Composite[n].TryGetValue("lora-b guided", out var bg)
                        ? $"; guided: MeteoRA {mg.AverageCorrect:F3}, LoRA-B {bg.AverageCorrect:F3}" : "";
                    ctx.Out.WriteLine($"composite-{n}: MeteoRA {m.AverageCorrect:F3}{arrow}, LoRA-B {b.AverageCorrect:F3}{single}{guided}");
                }
            ctx.Out.WriteLine($"total {sw.Elapsed.TotalMinutes:F1} min; " + string.Join(", ", result.StageSeconds.Select(kv => $"{kv.Key} {kv.Value:F0} s")));
            ctx.Out.WriteLine($"report: {runner.ReportDir} (results.md, results.json, results.png, routing-composite-*.png/.html)");
            return 0;
        });
        return cmd;
    }

    /// <summary>models/meteora-demo in the current folder or above it, or above the program (a build inside the repository).</summary>
    private static string? FindShipped()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
            {
                string candidate = Path.Combine(d.FullName, "models", "meteora-demo");
                if (Directory.Exists(candidate)) return candidate;
            }
        return null;
    }
}
