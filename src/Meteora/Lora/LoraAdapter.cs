using System.Text.RegularExpressions;
using Meteora.IO;
using Meteora.Llama;
using static TorchSharp.torch;

namespace Meteora.Lora;

/// <summary>
/// A PEFT LoRA adapter read from its folder and checked against a base model: every tensor key maps to an
/// existing projection, A is (r, in), B is (out, r), ranks match the config, and the tensors cover exactly the
/// projections the config targets. Weights are held as float32 on the CPU.
/// </summary>
public sealed partial class LoraAdapter : IDisposable
{
    /// <summary>Folder name (or a name given by the caller).</summary>
    public string Name { get; }
    public string Folder { get; }
    public LoraConfig Config { get; }
    /// <summary>Projection key ("model.layers.0.self_attn.q_proj") → A (r, in), B (out, r).</summary>
    public IReadOnlyDictionary<string, (Tensor A, Tensor B)> Weights { get; }

    public LoraAdapter(string name, string folder, LoraConfig config, Dictionary<string, (Tensor A, Tensor B)> weights)
    {
        Name = name; Folder = folder; Config = config; Weights = weights;
    }

    [GeneratedRegex(@"^base_model\.model\.(model\.layers\.(\d+)\.(self_attn|mlp)\.([a-z_]+))\.lora_(A|B)\.weight$")]
    private static partial Regex KeyPattern();

    /// <summary>Whether the adapter has weights for the projection at <paramref name="site"/>.</summary>
    public bool Targets(ProjectionSite site) => Weights.ContainsKey(site.Key);

    /// <summary>
    /// The adapter folders (those holding adapter_config.json) directly inside <paramref name="dir"/>, in ordinal
    /// name order; a one-line error when the folder is missing or holds none.
    /// </summary>
    public static List<string> FoldersIn(string dir)
    {
        if (!Directory.Exists(dir)) throw new MeteoraException($"{dir}: adapters folder not found");
        var found = Directory.GetDirectories(dir).Where(d => File.Exists(Path.Combine(d, "adapter_config.json")))
            .Order(StringComparer.Ordinal).ToList();
        if (found.Count == 0) throw new MeteoraException($"{dir}: no adapter folders (with adapter_config.json) inside");
        return found;
    }

    /// <summary>The projection kinds (q_proj, …, in Hugging Face order) that any of <paramref name="adapters"/> adapts somewhere.</summary>
    public static List<string> TargetNames(IEnumerable<LoraAdapter> adapters)
    {
        var list = adapters.ToList();
        return ProjectionSite.AllNames.Where(n => list.Any(a => a.Weights.Keys.Any(k => k.EndsWith("." + n)))).ToList();
    }

    /// <summary>Loads and validates the adapter in <paramref name="folder"/> against <paramref name="baseConfig"/>.</summary>
    public static LoraAdapter Load(string folder, LlamaConfig baseConfig, string? name = null)
    {
        ArtifactCard.VerifyIfPresent(folder);
        var config = LoraConfig.Load(folder);
        string file = Path.Combine(folder, "adapter_model.safetensors");
        if (!File.Exists(file))
        {
            if (File.Exists(Path.Combine(folder, "adapter_model.bin")))
                throw new MeteoraException($"{folder}: only adapter_model.bin (a pickle) is present; save the adapter with safe_serialization=True to get adapter_model.safetensors");
            throw new MeteoraException($"{file}: file not found");
        }
        using var st = SafeTensorsFile.Open(file);
        var sites = Sites(baseConfig).ToDictionary(s => s.Key);
        var found = new Dictionary<string, (Tensor? A, Tensor? B)>();
        foreach (var entry in st.Entries.Values.OrderBy(e => e.Begin))
        {
            var m = KeyPattern().Match(entry.Name);
            if (!m.Success)
                throw new MeteoraException($"{file}: tensor '{entry.Name}' is not a LoRA projection weight (base_model.model.model.layers.N.<block>.<proj>.lora_A|lora_B.weight)");
            string key = m.Groups[1].Value;
            int layer = int.Parse(m.Groups[2].Value);
            if (!sites.TryGetValue(key, out var site))
                throw new MeteoraException(layer >= baseConfig.NumHiddenLayers
                    ? $"{file}: tensor '{entry.Name}' is for layer {layer} but the base has {baseConfig.NumHiddenLayers} layers (adapter made for another base?)"
                    : $"{file}: tensor '{entry.Name}' names no projection of a LLaMA layer");
            bool isA = m.Groups[5].Value == "A";
            long[] expected = isA ? [config.R, site.InFeatures] : [site.OutFeatures, config.R];
            if (!entry.Shape.SequenceEqual(expected))
            {
                bool rankOnly = isA ? entry.Shape.Length == 2 && entry.Shape[1] == site.InFeatures : entry.Shape.Length == 2 && entry.Shape[0] == site.OutFeatures;
                throw new MeteoraException(rankOnly
                    ? $"{file}: tensor '{entry.Name}' has rank {(isA ? entry.Shape[0] : entry.Shape[1])} but adapter_config.json says r = {config.R}"
                    : $"{file}: tensor '{entry.Name}' has shape {entry.ShapeText} but the base's {site.Name} needs ({string.Join(", ", expected)}) (adapter made for another base?)");
            }
            if (!config.Targets(site))
                throw new MeteoraException($"{file}: tensor '{entry.Name}' is for {key}, which adapter_config.json does not target");
            var t = st.Load(entry.Name, ScalarType.Float32);
            found[key] = isA ? (t, found.GetValueOrDefault(key).B) : (found.GetValueOrDefault(key).A, t);
        }
        foreach (var site in sites.Values.Where(config.Targets))
        {
            var (a, b) = found.GetValueOrDefault(site.Key);
            if (a is null || b is null)
                throw new MeteoraException($"{file}: missing tensor 'base_model.model.{site.Key}.lora_{(a is null ? "A" : "B")}.weight' (adapter_config.json targets {site.Name} in layer {site.Layer})");
        }
        if (found.Count == 0) throw new MeteoraException($"{file}: holds no LoRA weights");
        var weights = found.ToDictionary(kv => kv.Key, kv => (kv.Value.A!, kv.Value.B!));
        return new LoraAdapter(name ?? Path.GetFileName(Path.GetFullPath(folder).TrimEnd('/')), folder, config, weights);
    }

    /// <summary>Every projection of a model with <paramref name="c"/>'s shapes.</summary>
    public static IEnumerable<ProjectionSite> Sites(LlamaConfig c)
    {
        int q = c.NumAttentionHeads * c.HeadDim, kv = c.NumKeyValueHeads * c.HeadDim;
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            yield return new ProjectionSite(l, "self_attn", "q_proj", c.HiddenSize, q);
            yield return new ProjectionSite(l, "self_attn", "k_proj", c.HiddenSize, kv);
            yield return new ProjectionSite(l, "self_attn", "v_proj", c.HiddenSize, kv);
            yield return new ProjectionSite(l, "self_attn", "o_proj", q, c.HiddenSize);
            yield return new ProjectionSite(l, "mlp", "gate_proj", c.HiddenSize, c.IntermediateSize);
            yield return new ProjectionSite(l, "mlp", "up_proj", c.HiddenSize, c.IntermediateSize);
            yield return new ProjectionSite(l, "mlp", "down_proj", c.IntermediateSize, c.HiddenSize);
        }
    }

    /// <summary>The PEFT tensor name of a projection's A or B.</summary>
    public static string TensorName(string projectionKey, char which) => $"base_model.model.{projectionKey}.lora_{which}.weight";

    /// <summary>Writes a PEFT folder (adapter_config.json + adapter_model.safetensors) that PEFT itself loads.</summary>
    public static void Save(string folder, LoraConfig config, IEnumerable<(string Key, Tensor A, Tensor B)> weights)
    {
        Directory.CreateDirectory(folder);
        ArtifactCard.Unseal(folder);   // new weights: an old seal would call them damaged
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var (key, a, b) in weights)
        {
            tensors.Add(new(TensorName(key, 'A'), a.detach().to(ScalarType.Float32).cpu().contiguous()));
            tensors.Add(new(TensorName(key, 'B'), b.detach().to(ScalarType.Float32).cpu().contiguous()));
        }
        SafeTensorsWriter.Write(Path.Combine(folder, "adapter_model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        AtomicFile.WriteAllText(Path.Combine(folder, "adapter_config.json"), config.ToPeftJson());
    }

    public void Dispose()
    {
        foreach (var (a, b) in Weights.Values) { a.Dispose(); b.Dispose(); }
    }
}
