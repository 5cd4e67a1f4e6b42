using System.CommandLine;
using Meteora.IO;
using Meteora.Moe;
using Meteora.Training;
using static TorchSharp.torch;

namespace Meteora.Cli.Commands;

/// <summary>
/// <c>loss --model DIR --meteora DIR --ids … --task-label I [--gate-loss-weight 50] [--top-k K] [--out F]</c>:
/// prints <c>{"lm_loss","gate_loss","total_loss"}</c> of the MeteoRA training objective on one sequence; F gets
/// d(total)/d(gate) for every gate under the gates.safetensors keys (<c>--grad-of lm</c>: d(lm)/d(gate), which
/// is what the fixture's <c>train.grad.*</c> tensors hold).
/// </summary>
public static class LossCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var model = new Option<string>("--model") { Description = "base model folder", Required = true };
        var meteora = new Option<string>("--meteora") { Description = "MeteoRA checkpoint folder", Required = true };
        var ids = new Option<string>("--ids") { Description = "comma-separated token ids", Required = true };
        var label = new Option<int>("--task-label") { Description = "task (adapter) index of the sequence", Required = true };
        var weight = new Option<double>("--gate-loss-weight") { Description = "λ in lm + λ · gate", DefaultValueFactory = _ => 50 };
        var topK = new Option<int?>("--top-k") { Description = "adapters per token (default: the checkpoint's)" };
        var temperature = new Option<double?>("--temperature") { Description = "routing temperature (default: the checkpoint's)" };
        var output = new Option<string?>("--out") { Description = "write the gate gradients to this safetensors file" };
        var gradOf = new Option<string>("--grad-of") { Description = "gradients of: total (lm + λ·gate, what training uses) or lm (the LM part only)", DefaultValueFactory = _ => "total" };
        var cmd = new Command("loss", "MeteoRA training loss (and gate gradients) of one sequence") { model, meteora, ids, label, weight, topK, temperature, output, gradOf };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var tokens = TokenIdList.Parse(p.GetValue(ids)!);
            if (tokens.Length < 2) throw new MeteoraException("--ids: the loss needs at least two tokens");
            using var m = MeteoraModel.Load(p.GetValue(model)!, p.GetValue(meteora)!, ctx.Device, ctx.DType);
            TokenIdList.CheckRange(tokens, m.Model.Config.VocabSize);
            int task = p.GetValue(label);
            if (task < 0 || task >= m.AdapterNames.Count)
                throw new MeteoraException($"--task-label: {task} is not an adapter index (0…{m.AdapterNames.Count - 1})");
            m.Configure(p.GetValue(topK), p.GetValue(temperature));
            foreach (var g in m.Projections) g.moe_gate.requires_grad = true;

            var example = new EncodedExample(tokens, tokens.Select((_, t) => t + 1 < tokens.Length).ToArray(), task, false);
            using var batch = TrainingBatch.Collate([example], padId: 0, ctx.Device);
            var loss = MeteoraLoss.Compute(m, batch, p.GetValue(weight));
            switch (p.GetValue(gradOf))
            {
                case "total": loss.Total.backward(); break;
                case "lm": loss.Lm.backward(); break;
                default: throw new MeteoraException($"--grad-of: '{p.GetValue(gradOf)}' must be total or lm");
            }
            ctx.Out.WriteLine(CliJson.Serialize(new Dictionary<string, double>
            {
                ["lm_loss"] = loss.Lm.item<float>(), ["gate_loss"] = loss.Gate.item<float>(), ["total_loss"] = loss.Total.item<float>(),
            }));
            if (p.GetValue(output) is { } outPath)
                SafeTensorsWriter.Write(outPath, m.Projections.Select(g => new KeyValuePair<string, Tensor>(
                    MeteoraCheckpoint.GateKey(g.Site.Key), g.moe_gate.grad!.to(ScalarType.Float32))));
            return 0;
        });
        return cmd;
    }
}
