using System.CommandLine;
using Meteora.Llama;
using Meteora.Lora;
using Meteora.Moe;

namespace Meteora.Cli.Commands;

/// <summary><c>inspect DIR [--model BASE]</c>: what a MeteoRA checkpoint holds — base shape, adapters, gates, sizes.</summary>
public static class InspectCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var folder = new Argument<string>("checkpoint") { Description = "MeteoRA checkpoint folder" };
        var model = new Option<string?>("--model") { Description = "base model folder (default: the checkpoint's base_model)" };
        var cmd = new Command("inspect", "Describe a MeteoRA checkpoint") { folder, model };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            string dir = p.GetValue(folder)!;
            var config = MeteoraCheckpointConfig.Load(dir);
            string baseFolder = p.GetValue(model) ?? (config.BaseModel is { } b ? MeteoraCheckpointConfig.Resolve(dir, b)
                : throw new MeteoraException($"{dir}: the checkpoint names no base_model; pass --model"));
            var c = LlamaConfig.Load(baseFolder);
            var adapters = MeteoraCheckpoint.LoadAdapters(dir, config, c);
            try
            {
                var o = ctx.Out;
                var sites = LoraAdapter.Sites(c).ToList();
                long baseParams = (long)c.VocabSize * c.HiddenSize * (c.TieWordEmbeddings ? 1 : 2)
                    + sites.Sum(s => (long)s.InFeatures * s.OutFeatures) + (2L * c.NumHiddenLayers + 1) * c.HiddenSize;
                var gated = sites.Where(s => config.TargetModules.Contains(s.Name)).ToList();
                long gateParams = gated.Sum(s => (long)adapters.Count * s.InFeatures);
                long adapterParams = adapters.Sum(a => a.Weights.Values.Sum(w => w.A.numel() + w.B.numel()));

                o.WriteLine($"MeteoRA checkpoint {dir}");
                o.WriteLine($"base      {baseFolder}");
                o.WriteLine($"          llama, {c.NumHiddenLayers} layers, hidden {c.HiddenSize}, intermediate {c.IntermediateSize}, heads {c.NumAttentionHeads}/{c.NumKeyValueHeads} (head_dim {c.HeadDim}), vocab {c.VocabSize}, rope {c.Rope.RopeType} θ={c.Rope.Theta:G}");
                o.WriteLine($"adapters  {adapters.Count}, in gate order:");
                for (int i = 0; i < adapters.Count; i++)
                {
                    var a = adapters[i];
                    var targets = LoraAdapter.TargetNames([a]).Select(n => n.Replace("_proj", ""));
                    int layers = a.Weights.Keys.Select(k => k.Split('.')[2]).Distinct().Count();
                    string source = config.Adapters[i].Path is { } path ? MeteoraCheckpointConfig.Resolve(dir, path) : MeteoraCheckpoint.AdaptersFile;
                    o.WriteLine($"  {i,3}  {a.Name,-20} r={a.Config.R} alpha={a.Config.LoraAlpha:G} scale={a.Config.Scale:G4} targets={string.Join(",", targets)} layers={layers}/{c.NumHiddenLayers} params={a.Weights.Values.Sum(w => w.A.numel() + w.B.numel()):N0}  ({source})");
                }
                o.WriteLine($"gates     {gated.Count} projections ({string.Join(", ", config.TargetModules)}), each ({adapters.Count}, in_features), float32");
                o.WriteLine($"routing   top_k {config.TopK}, temperature {config.Temperature:G}");
                o.WriteLine($"params    base {baseParams:N0}, adapters {adapterParams:N0}, gates {gateParams:N0}");
                o.WriteLine($"memory    bfloat16 base + adapters, float32 gates: {(2.0 * (baseParams + adapterParams) + 4.0 * gateParams) / (1 << 20):N1} MiB; float32: {4.0 * (baseParams + adapterParams + gateParams) / (1 << 20):N1} MiB (weights only, no KV cache)");
                return 0;
            }
            finally
            {
                foreach (var a in adapters) a.Dispose();
            }
        });
        return cmd;
    }
}
