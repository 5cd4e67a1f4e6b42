using System.CommandLine;
using Meteora.Training;

namespace Meteora.Cli.Commands;

/// <summary>
/// <c>add-adapter --model BASE --meteora MDIR --adapter NEWDIR --data DATADIR --out MDIR2 [--old-rows-lr 0]
/// [--replay-fraction 1]</c>: grows a trained MeteoRA checkpoint by one adapter, training the new gate rows on the new
/// task and a replay of the old tasks in DATADIR (see <see cref="AdapterAddition"/>).
/// </summary>
public static class AddAdapterCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var model = new Option<string>("--model") { Description = "base Hugging Face model folder", Required = true };
        var meteora = new Option<string>("--meteora") { Description = "the trained MeteoRA checkpoint to grow", Required = true };
        var adapter = new Option<string>("--adapter") { Description = "the new PEFT adapter folder (its folder name is its name, and its task's)", Required = true };
        var name = new Option<string?>("--name") { Description = "the new adapter's name (default: its folder name); DATADIR must hold a task folder of that name" };
        var data = new Option<string>("--data") { Description = "task folders: the new task's and any old tasks' to replay", Required = true };
        var output = new Option<string>("--out") { Description = "the grown checkpoint folder (also metrics.jsonl, loss_curve.png)", Required = true };
        var oldRowsLr = new Option<double>("--old-rows-lr") { Description = "learning rate of the old gate rows (0: frozen), on the same schedule", DefaultValueFactory = _ => 0 };
        var calibrate = new Option<bool>("--calibrate") { Description = "after training, scale the new gate row of every projection to the best balanced accuracy of the held-out decisions (new and old tasks count equally)" };
        var replay = new Option<double>("--replay-fraction") { Description = "old-task examples replayed per new-task example, split evenly over the old tasks in --data", DefaultValueFactory = _ => 1.0 };
        var weight = new Option<double>("--gate-loss-weight") { Description = "λ in lm + λ · gate", DefaultValueFactory = _ => 50 };
        var gateInit = new Option<string>("--gate-init") { Description = "new rows: small (near-uniform start) or normal", DefaultValueFactory = _ => "small" };
        var responseOnly = new Option<bool>("--response-only") { Description = "LM loss on the response only (default: prompt and response, as train-gate)" };
        var balance = new Option<bool>("--balance") { Description = "sample every task equally often" };
        var evalFraction = new Option<double>("--eval-fraction") { Description = "share of each task held out for evaluation", DefaultValueFactory = _ => 0.1 };
        var train = new TrainingCliOptions(lr: 5e-4, weightDecay: 0.01, clip: 0.3);
        var inContext = new InContextCliOptions();
        var cmd = new Command("add-adapter", "Grow a trained MeteoRA checkpoint by one adapter without retraining every gate")
            { model, meteora, adapter, name, data, output, oldRowsLr, replay, weight, gateInit, responseOnly, balance, evalFraction, calibrate };
        train.AddTo(cmd, cudaGraph: true);
        inContext.AddTo(cmd);
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            string folder = p.GetValue(adapter)!;
            string adapterName = p.GetValue(name) ?? Path.GetFileName(Path.GetFullPath(folder).TrimEnd('/'));
            var options = inContext.Apply(p, train.Read(p, responseOnly: p.GetValue(responseOnly) ? true : null, ctx.Device)) with { Balance = p.GetValue(balance) };
            var add = new AdapterAdditionOptions
            {
                OldRowsLr = p.GetValue(oldRowsLr), ReplayFraction = p.GetValue(replay), GateLossWeight = p.GetValue(weight),
                GateInit = p.GetValue(gateInit)!, EvalFraction = p.GetValue(evalFraction), Calibrate = p.GetValue(calibrate),
            };
            using var ctrlC = new CtrlC(ctx.Err);
            var progress = new ConsoleProgress(ctx.Err, ctx.Err == Console.Error && !Console.IsErrorRedirected, "lm_loss", "gate_loss", "gate_acc", "lr");
            string outDir = p.GetValue(output)!;
            var r = AdapterAddition.Add(p.GetValue(model)!, p.GetValue(meteora)!, (adapterName, folder), p.GetValue(data)!, outDir, add, options,
                ctx.Device, ctx.DType, progress, ctrlC.Token);
            if (r.Outcome == TrainingOutcome.Interrupted)
            {
                ctx.Err.WriteLine("stopped; continue with the same command and --resume");
                return ctrlC.Requested ? 130 : 0;
            }
            ctx.Err.WriteLine($"grown checkpoint written to {outDir}: '{r.Added}' is adapter {r.NewIndex}; replayed " +
                (r.Replayed.Count == 0 ? "no old task" : string.Join(", ", r.Replayed.Select(kv => $"{kv.Key} ({kv.Value})"))) +
                (r.NotReplayed.Count > 0 ? $"; not replayed (not in --data): {string.Join(", ", r.NotReplayed)}" : "") +
                (r.FinalEval.TryGetValue("eval_gate_acc", out double acc) ? $"; eval gate accuracy {acc:P1}" : ""));
            return 0;
        });
        return cmd;
    }
}
