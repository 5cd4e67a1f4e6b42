using System.CommandLine;
using Meteora.Lora;
using Meteora.Training;

namespace Meteora.Cli.Commands;

/// <summary>
/// <c>train-gate --model DIR (--adapters-dir DIR | --adapter DIR…) --data DATADIR --out MDIR</c>: trains the
/// MeteoRA gates on the union of the tasks' data. Task i = adapter i = sorted names unless <c>--order</c>.
/// </summary>
public static class TrainGateCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var model = new Option<string>("--model") { Description = "base Hugging Face model folder", Required = true };
        var adaptersDir = new Option<string?>("--adapters-dir") { Description = "folder whose subfolders are the adapters (named like the tasks)" };
        var adapter = new Option<string[]>("--adapter") { Description = "adapter folders (named like the tasks)", AllowMultipleArgumentsPerToken = true };
        var data = new Option<string>("--data") { Description = "folder with one task folder (train.jsonl) per adapter", Required = true };
        var output = new Option<string>("--out") { Description = "output MeteoRA checkpoint folder (also metrics.jsonl, loss_curve.png, checkpoint/)", Required = true };
        var order = new Option<string?>("--order") { Description = "comma-separated adapter names in gate order (default: sorted names)" };
        var weight = new Option<double>("--gate-loss-weight") { Description = "λ in lm + λ · gate", DefaultValueFactory = _ => 50 };
        var topK = new Option<int>("--top-k") { Description = "adapters per token during training", DefaultValueFactory = _ => 2 };
        var temperature = new Option<double>("--temperature") { Description = "routing temperature", DefaultValueFactory = _ => 1.0 };
        var gateInit = new Option<string>("--gate-init") { Description = "small (default: near-uniform start) or normal (the original's N(0,1))", DefaultValueFactory = _ => "small" };
        var trainAdapters = new Option<bool>("--train-adapters") { Description = "also train the stacked adapters (the checkpoint then embeds them)" };
        var responseOnly = new Option<bool>("--response-only") { Description = "LM loss on the response only (default: prompt and response, TrainingOptions.GateResponseOnlyDefault)" };
        var balance = new Option<bool>("--balance") { Description = "sample every task equally often" };
        var evalFraction = new Option<double>("--eval-fraction") { Description = "share of each task held out for evaluation", DefaultValueFactory = _ => 0.1 };
        var train = new TrainingCliOptions(lr: 5e-4, weightDecay: 0.01, clip: 0.3);
        var inContext = new InContextCliOptions();
        var pack = new Option<int>("--pack") { Description = "examples of different tasks per training sequence, each part's tokens labelled with its own task (1: one example per sequence)", DefaultValueFactory = _ => 1 };
        var cmd = new Command("train-gate", "Train the MeteoRA gates on the union of the tasks' data")
            { model, adaptersDir, adapter, data, output, order, weight, topK, temperature, gateInit, trainAdapters, responseOnly, balance, evalFraction };
        train.AddTo(cmd, cudaGraph: true);
        inContext.AddTo(cmd);
        cmd.Options.Add(pack);
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var adapters = ResolveAdapters(p.GetValue(adaptersDir), p.GetValue(adapter), p.GetValue(order));
            var options = inContext.Apply(p, train.Read(p, responseOnly: p.GetValue(responseOnly) ? true : null, ctx.Device)) with { Balance = p.GetValue(balance) };
            var gate = new GateTrainingOptions
            {
                GateLossWeight = p.GetValue(weight), TopK = p.GetValue(topK), Temperature = p.GetValue(temperature),
                GateInit = p.GetValue(gateInit)!, TrainAdapters = p.GetValue(trainAdapters), EvalFraction = p.GetValue(evalFraction), Pack = p.GetValue(pack),
            };
            using var ranks = DistributedLaunch.Join(ctx, p.GetValue(output)!);   // null unless launched by torchrun with several ranks
            using var ctrlC = new CtrlC(ctx.Err);
            var progress = new ConsoleProgress(ctx.Err, ctx.Err == Console.Error && !Console.IsErrorRedirected, "lm_loss", "gate_loss", "gate_acc", "lr");
            string outDir = p.GetValue(output)!;
            GateTrainingResult result;
            try { result = GateTrainer.Train(p.GetValue(model)!, adapters, p.GetValue(data)!, outDir, gate, options, ctx.Device, ctx.DType, progress, ctrlC.Token, ranks); }
            catch (Exception) when (DistributedLaunch.AbortOnError(ranks)) { throw; }   // the filter aborts NCCL and lets the error through
            if (ranks is { Rank: > 0 }) return result.Outcome == TrainingOutcome.Interrupted && ctrlC.Requested ? 130 : 0;   // rank 0 reports
            if (result.Outcome == TrainingOutcome.Interrupted)
            {
                ctx.Err.WriteLine("stopped; continue with the same command and --resume");
                return ctrlC.Requested ? 130 : 0;
            }
            var e = result.FinalEval;
            ctx.Err.WriteLine($"MeteoRA checkpoint written to {outDir}" +
                (e.TryGetValue("eval_gate_acc", out double acc) ? $" (eval gate accuracy {acc:P1}, eval loss {e["eval_loss"]:F4})" : ""));
            return 0;
        });
        return cmd;
    }

    /// <summary>Adapter names and folders in gate order.</summary>
    private static List<(string Name, string Folder)> ResolveAdapters(string? dir, string[]? folders, string? order)
    {
        if ((dir is null) == (folders is null or { Length: 0 }))
            throw new MeteoraException("train-gate: give exactly one of --adapters-dir and --adapter");
        List<(string Name, string Folder)> found;
        if (dir is not null)
            found = LoraAdapter.FoldersIn(dir).Select(d => (Path.GetFileName(d), d)).ToList();
        else
        {
            found = folders!.Select(f => (Path.GetFileName(Path.GetFullPath(f).TrimEnd('/')), f)).ToList();
        }
        var dup = found.GroupBy(a => a.Name).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new MeteoraException($"train-gate: two adapters are named '{dup.Key}'");
        if (order is null) return found.OrderBy(a => a.Name, StringComparer.Ordinal).ToList();
        var names = order.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var missing = names.Except(found.Select(a => a.Name)).ToList();
        var unlisted = found.Select(a => a.Name).Except(names).ToList();
        if (missing.Count > 0 || unlisted.Count > 0 || names.Length != names.Distinct().Count())
            throw new MeteoraException($"--order: must list every adapter once — unknown: [{string.Join(", ", missing)}], not listed: [{string.Join(", ", unlisted)}]");
        return names.Select(n => found.Single(a => a.Name == n)).ToList();
    }
}
