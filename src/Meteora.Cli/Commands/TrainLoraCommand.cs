using System.CommandLine;
using Meteora.Llama;
using Meteora.Lora;
using Meteora.Training;

namespace Meteora.Cli.Commands;

/// <summary><c>train-lora --model DIR --data TASKDIR --out DIR</c>: trains a new PEFT LoRA adapter on one task.</summary>
public static class TrainLoraCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var model = new Option<string>("--model") { Description = "base Hugging Face model folder", Required = true };
        var data = new Option<string>("--data") { Description = "task folder with train.jsonl (and test.jsonl for evaluation), or a folder of task folders (their union)", Required = true };
        var balance = new Option<bool>("--balance") { Description = "with a folder of tasks: sample every task equally often" };
        var output = new Option<string>("--out") { Description = "output folder: the PEFT adapter, metrics.jsonl, checkpoint/", Required = true };
        var r = new Option<int>("--r") { Description = "LoRA rank", DefaultValueFactory = _ => 8 };
        var alpha = new Option<double>("--alpha") { Description = "LoRA alpha (scale = alpha / r)", DefaultValueFactory = _ => 16 };
        var rslora = new Option<bool>("--rslora") { Description = "scale = alpha / √r" };
        var targets = new Option<string>("--targets") { Description = "all-linear or a comma list of q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", DefaultValueFactory = _ => "all-linear" };
        var targetRegex = new Option<string?>("--target-regex") { Description = "PEFT regex target instead of --targets: full match over module paths such as model.layers.0.self_attn.q_proj" };
        var layers = new Option<string?>("--layers") { Description = "comma list of decoder layers to adapt (PEFT's layers_to_transform; default: all)" };
        var dropout = new Option<double>("--dropout") { Description = "LoRA dropout", DefaultValueFactory = _ => 0.05 };
        var fullLoss = new Option<bool>("--full-sequence-loss") { Description = "loss on prompt and response (default: response only)" };
        var replay = new Option<int>("--replay") { Description = "rehearsal: rows of generic text (make-base's corpus) per micro-batch whose LM loss is added, so the adapter keeps the base's skills (0: off)", DefaultValueFactory = _ => 0 };
        var replayLen = new Option<int>("--replay-len") { Description = "tokens per rehearsal row", DefaultValueFactory = _ => 1024 };
        var replayWeight = new Option<double>("--replay-weight") { Description = "weight of the rehearsal loss beside the task loss", DefaultValueFactory = _ => 1.0 };
        var evalFraction = new Option<double>("--eval-fraction") { Description = "share of each task's train.jsonl held out as the evaluation set (what --keep-best chooses by); 0: evaluate on test.jsonl", DefaultValueFactory = _ => 0 };
        var inContext = new InContextCliOptions();
        var train = new TrainingCliOptions(lr: 2e-4, weightDecay: 0.01, clip: 1.0);
        var cmd = new Command("train-lora", "Train a LoRA adapter on a task folder")
            { model, data, output, r, alpha, rslora, targets, targetRegex, layers, dropout, fullLoss, balance, replay, replayLen, replayWeight, evalFraction };
        train.AddTo(cmd);
        inContext.AddTo(cmd);
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var options = inContext.Apply(p, train.Read(p, responseOnly: p.GetValue(fullLoss) ? false : null, ctx.Device)) with
            {
                Balance = p.GetValue(balance), ReplayRows = p.GetValue(replay), ReplaySeqLen = p.GetValue(replayLen), ReplayWeight = p.GetValue(replayWeight),
            };
            string t = p.GetValue(targets)!;
            var names = t == "all-linear" ? ProjectionSite.AllNames : t.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            foreach (var n in names)
                if (!ProjectionSite.AllNames.Contains(n)) throw new MeteoraException($"--targets: '{n}' is not a LLaMA projection");
            if (p.GetValue(r) < 1) throw new MeteoraException($"--r: {p.GetValue(r)} must be ≥ 1");
            if (p.GetValue(dropout) is < 0 or >= 1) throw new MeteoraException($"--dropout: {p.GetValue(dropout)} must be in [0, 1)");
            int[]? layerList = p.GetValue(layers) is { } layerText
                ? layerText.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                    .Select(x => int.TryParse(x, out int i) && i >= 0 ? i : throw new MeteoraException($"--layers: '{x}' is not a layer index")).ToArray()
                : null;
            var lora = new LoraConfig
            {
                R = p.GetValue(r), LoraAlpha = p.GetValue(alpha), UseRsLora = p.GetValue(rslora),
                TargetModules = names, LayersToTransform = layerList, LoraDropout = p.GetValue(dropout),
            };
            if (p.GetValue(targetRegex) is { } rx)
            {
                if (p.GetResult(targets) is { Implicit: false }) throw new MeteoraException("--target-regex: give either --targets or --target-regex");
                if (!LoraConfig.IsValidRegex(rx)) throw new MeteoraException($"--target-regex: '{rx}' is not a valid regular expression");
                lora = lora with { TargetRegex = rx };
            }
            using var ranks = DistributedLaunch.Join(ctx, p.GetValue(output)!);   // null unless launched by torchrun with several ranks
            using var ctrlC = new CtrlC(ctx.Err);
            var progress = new ConsoleProgress(ctx.Err, ctx.Err == Console.Error && !Console.IsErrorRedirected, "loss", "lr");
            LoraTrainingResult result;
            try
            {
                result = LoraTrainer.Train(p.GetValue(model)!, p.GetValue(data)!, p.GetValue(output)!, lora, options,
                    ctx.Device, ctx.DType, progress, ctrlC.Token, ranks, p.GetValue(evalFraction));
            }
            catch (Exception) when (DistributedLaunch.AbortOnError(ranks)) { throw; }   // the filter aborts NCCL and lets the error through
            if (ranks is { Rank: > 0 }) return result.Outcome == TrainingOutcome.Interrupted && ctrlC.Requested ? 130 : 0;   // rank 0 reports
            if (result.Outcome == TrainingOutcome.Interrupted)
            {
                ctx.Err.WriteLine("stopped; continue with the same command and --resume");
                return ctrlC.Requested ? 130 : 0;
            }
            ctx.Err.WriteLine($"adapter written to {p.GetValue(output)} ({result.TrainExamples} examples" +
                (result.FinalEval.TryGetValue("eval_loss", out double l) ? $", eval loss {l:F4}" : "") + ")");
            return 0;
        });
        return cmd;
    }
}
