using System.CommandLine;
using Meteora.Training;

namespace Meteora.Cli.Commands;

/// <summary><c>make-base --out DIR</c>: builds and pretrains the project's tiny base model (a Hugging Face folder).</summary>
public static class MakeBaseCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var output = new Option<string>("--out") { Description = "output model folder", Required = true };
        var documents = new Option<int>("--documents") { Description = "generic documents generated for pretraining (each about --max-seq-len bytes)", DefaultValueFactory = _ => 4000 };
        var d = TinyBaseBuilder.DefaultConfig;
        var layers = new Option<int>("--layers") { Description = "decoder layers", DefaultValueFactory = _ => d.NumHiddenLayers };
        var hidden = new Option<int>("--hidden-size") { Description = "model width", DefaultValueFactory = _ => d.HiddenSize };
        var intermediate = new Option<int>("--intermediate-size") { Description = "MLP width", DefaultValueFactory = _ => d.IntermediateSize };
        var heads = new Option<int>("--heads") { Description = "attention heads (head size = hidden / heads)", DefaultValueFactory = _ => d.NumAttentionHeads };
        var kvHeads = new Option<int>("--kv-heads") { Description = "key/value heads (grouped-query attention; divides --heads)", DefaultValueFactory = _ => d.NumKeyValueHeads };
        var train = new TrainingCliOptions(lr: 3e-3, weightDecay: 0.01, clip: 1.0);
        var cmd = new Command("make-base", "Build and briefly pretrain the built-in tiny LLaMA base on generated generic text")
            { output, documents, layers, hidden, intermediate, heads, kvHeads };
        train.AddTo(cmd);
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var options = train.Read(p, responseOnly: false);
            if (p.GetValue(train.Steps) is null && p.GetResult(train.Epochs) is null or { Implicit: true }) options = options with { Steps = 1500 };
            if (p.GetValue(documents) < 20) throw new MeteoraException("--documents: at least 20 documents are needed");
            var config = TinyBaseBuilder.Config(p.GetValue(layers), p.GetValue(hidden), p.GetValue(intermediate), p.GetValue(heads), p.GetValue(kvHeads));
            if (options.MaxSeqLen > config.MaxPositionEmbeddings)
                throw new MeteoraException($"--max-seq-len: {options.MaxSeqLen} exceeds the base's {config.MaxPositionEmbeddings} positions");
            using var ctrlC = new CtrlC(ctx.Err);
            var progress = new ConsoleProgress(ctx.Err, ctx.Err == Console.Error && !Console.IsErrorRedirected, "loss", "lr");
            var (initial, final) = TinyBaseBuilder.Build(p.GetValue(output)!, config, options,
                p.GetValue(documents), ctx.Device, progress, ctrlC.Token);
            ctx.Err.WriteLine($"base model written to {p.GetValue(output)} (held-out loss {initial:F3} → {final:F3})");
            return 0;
        });
        return cmd;
    }
}
