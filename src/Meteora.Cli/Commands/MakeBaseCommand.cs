using System.CommandLine;
using Meteora.Runtime;
using Meteora.Training;

namespace Meteora.Cli.Commands;

/// <summary>
/// <c>make-base --out DIR</c>: builds and pretrains the project's own base model (a Hugging Face folder with probes,
/// model card and seal). On <c>--device cuda</c> it trains in bfloat16 with float32 master weights; resumable with
/// <c>--checkpoint-every</c> / <c>--stop-after</c> / <c>--resume</c> like every training command.
/// </summary>
public static class MakeBaseCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var output = new Option<string>("--out") { Description = "output model folder", Required = true };
        var documents = new Option<int?>("--documents") { Description = "generated documents to train on (default: one fresh document per sequence, steps × batch × grad-accum)" };
        var d = TinyBaseBuilder.DefaultConfig;
        var layers = new Option<int>("--layers") { Description = "decoder layers", DefaultValueFactory = _ => d.NumHiddenLayers };
        var hidden = new Option<int>("--hidden-size") { Description = "model width", DefaultValueFactory = _ => d.HiddenSize };
        var intermediate = new Option<int>("--intermediate-size") { Description = "MLP width", DefaultValueFactory = _ => d.IntermediateSize };
        var heads = new Option<int>("--heads") { Description = "attention heads (head size = hidden / heads)", DefaultValueFactory = _ => d.NumAttentionHeads };
        var kvHeads = new Option<int>("--kv-heads") { Description = "key/value heads (grouped-query attention; divides --heads)", DefaultValueFactory = _ => d.NumKeyValueHeads };
        var positions = new Option<int>("--max-positions") { Description = "max_position_embeddings of the config (≥ --max-seq-len)", DefaultValueFactory = _ => d.MaxPositionEmbeddings };
        var shard = new Option<double>("--shard-size-mb") { Description = "split the weights into safetensors shards of at most this many MB (0: one file)", DefaultValueFactory = _ => 0 };
        var name = new Option<string?>("--name") { Description = "the model card's title (default: the output folder's name)" };
        var train = new TrainingCliOptions(lr: 3e-3, weightDecay: 0.01, clip: 1.0);
        var cmd = new Command("make-base", "Build and pretrain the project's own LLaMA base on generated generic text (CPU, or CUDA in bf16 mixed precision)")
            { output, documents, layers, hidden, intermediate, heads, kvHeads, positions, shard, name };
        train.AddTo(cmd);
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var options = train.Read(p, responseOnly: false, ctx.Device);
            if (ctx.DType == TorchSharp.torch.ScalarType.Float16)
                throw new MeteoraException("--dtype float16: pretraining in float16 needs loss scaling, which make-base does not do; use bfloat16 (the CUDA default) or float32");
            if (p.GetValue(train.Steps) is null && p.GetResult(train.Epochs) is null or { Implicit: true }) options = options with { Steps = 1500 };
            int docs = p.GetValue(documents) ?? (int)Math.Min(int.MaxValue / 2, (long)(options.Steps ?? 1500) * options.BatchSize * options.GradAccum);
            if (docs < 1) throw new MeteoraException($"--documents: {docs} must be ≥ 1");
            if (p.GetValue(shard) is < 0 or > 1e6) throw new MeteoraException($"--shard-size-mb: {p.GetValue(shard)} is out of range (0…1000000)");
            var config = TinyBaseBuilder.Config(p.GetValue(layers), p.GetValue(hidden), p.GetValue(intermediate), p.GetValue(heads), p.GetValue(kvHeads));
            if (p.GetValue(positions) < 2) throw new MeteoraException($"--max-positions: {p.GetValue(positions)} must be ≥ 2");
            config = config with { MaxPositionEmbeddings = p.GetValue(positions) };
            if (options.MaxSeqLen > config.MaxPositionEmbeddings)
                throw new MeteoraException($"--max-seq-len: {options.MaxSeqLen} exceeds the base's {config.MaxPositionEmbeddings} positions");
            string outDir = p.GetValue(output)!;
            string command = "meteora " + string.Join(' ', p.Tokens.Select(t => t.Value.Contains(' ') ? $"\"{t.Value}\"" : t.Value));
            var card = new BaseCardInfo(p.GetValue(name) ?? Path.GetFileName(Path.GetFullPath(outDir).TrimEnd('/')), command,
                MachineDescription.Describe(ctx.Device), command.Replace(" --resume", ""));
            using var ctrlC = new CtrlC(ctx.Err);
            var progress = new ConsoleProgress(ctx.Err, ctx.Err == Console.Error && !Console.IsErrorRedirected, "loss", "lr");
            var r = TinyBaseBuilder.Build(outDir, config, options, docs, ctx.Device, ctx.DType, progress, ctrlC.Token,
                (long)(p.GetValue(shard) * 1e6), card);
            if (r.Outcome == TrainingOutcome.Interrupted)
            {
                ctx.Err.WriteLine($"stopped with a checkpoint in {outDir}; continue with the same command and --resume");
                return 0;
            }
            ctx.Err.WriteLine($"base model written to {outDir} (held-out loss {r.InitialLoss:F3} → {r.FinalLoss:F3}, {r.TrainSeconds:F0} s)");
            ctx.Err.WriteLine(r.Probes!.ToString());
            return 0;
        });
        return cmd;
    }
}
