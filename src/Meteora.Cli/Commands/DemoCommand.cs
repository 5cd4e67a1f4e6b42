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
        var quick = new Option<bool>("--quick") { Description = "smoke run of the same pipeline on three tasks with a few steps of everything (about a minute)" };
        var cmd = new Command("demo", "Build tasks and a tiny base, train LoRAs, LoRA-B and MeteoRA gates, evaluate them all and write a report") { dir, quick };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var settings = p.GetValue(quick) ? DemoSettings.Quick : DemoSettings.Full;
            string folder = p.GetValue(dir)!;
            if (p.GetValue(quick) && p.GetResult(dir) is null or { Implicit: true }) folder += "-quick";   // never mix with the full run's cache
            bool interactive = ctx.Err == Console.Error && !Console.IsErrorRedirected;
            using var ctrlC = new CtrlC(ctx.Err);
            var runner = new DemoRunner(folder, settings, ctx.Device, ctx.DType, line => { ctx.Err.WriteLine(line); ctx.Err.Flush(); },
                title => { ctx.Err.WriteLine($"  {title}"); return new ConsoleProgress(ctx.Err, interactive, "loss", "lm_loss", "gate_acc"); });
            var sw = Stopwatch.StartNew();
            DemoResult result;
            try { result = runner.Run(ctrlC.Token); }
            catch (OperationCanceledException) { ctx.Err.WriteLine("demo interrupted; run it again to start over (task data and base stay cached)"); return 130; }
            ctx.Out.Write(DemoRunner.Markdown(result));
            ctx.Out.WriteLine();
            ctx.Out.WriteLine($"PEFT-oracle mean {result.Mean("peft"):F3}; MeteoRA top-1 {result.Mean("meteora-top1"):F3}, top-2 {result.Mean("meteora-top2"):F3}; LoRA-B {result.Mean("lora-b"):F3}");
            foreach (int n in result.Composite.Keys.Order())
                if (result.Composite[n].TryGetValue("meteora-top2", out var m) && result.Composite[n].TryGetValue("lora-b", out var b))
                {
                    var (single, score) = result.BestSingle(n);
                    ctx.Out.WriteLine($"composite-{n}: MeteoRA {m.AverageCorrect:F3}, LoRA-B {b.AverageCorrect:F3}, best single adapter ({single}) {score:F3}");
                }
            ctx.Out.WriteLine($"total {sw.Elapsed.TotalMinutes:F1} min; " + string.Join(", ", result.StageSeconds.Select(kv => $"{kv.Key} {kv.Value:F0} s")));
            ctx.Out.WriteLine($"report: {runner.ReportDir} (results.md, results.json, results.png, routing-composite-*.png/.html)");
            return 0;
        });
        return cmd;
    }
}
