using Meteora.IO;
using Meteora.Llama;
using Meteora.Lora;
using static TorchSharp.torch;

namespace Meteora.Moe;

/// <summary>What <see cref="OriginalCheckpointConverter.Convert"/> found.</summary>
public sealed record ConversionReport(int Gates, IReadOnlyList<string> TargetModules, IReadOnlyList<string> ChangedAdapters);

/// <summary>
/// Converts a checkpoint of the original Python MeteoRA (one <c>model.safetensors</c> with keys under
/// <c>base_model.model.</c>: <c>base_layer.weight</c>, stacked <c>lora_A (Σr, in)</c> / <c>lora_B (out, Σr)</c>
/// with adapter i at rows/columns i·r…, and <c>moe_gate.weight (N, in)</c>) into this project's checkpoint folder.
/// Only gates and stacked adapters are read, never the base weights. Stacked adapters are compared with the
/// adapter folders; those changed by training are kept in <c>adapters.safetensors</c>.
/// </summary>
public static class OriginalCheckpointConverter
{
    private const string Prefix = "base_model.model.";

    /// <summary>
    /// Reads <paramref name="originalFile"/> (the Python MeteoRA's model.safetensors), checks it against the base in
    /// <paramref name="baseFolder"/> and the PEFT folders it was built from (in gate order), and writes a checkpoint folder.
    /// </summary>
    public static ConversionReport Convert(string originalFile, string baseFolder, IReadOnlyList<string> adapterFolders,
        string outFolder, int topK = 2, double temperature = 1.0, Action<string>? log = null)
    {
        if (adapterFolders.Count == 0) throw new MeteoraException("convert: give the adapter folders (--adapter, in gate order)");
        if (Directory.Exists(outFolder) && Directory.EnumerateFileSystemEntries(outFolder).Any())
            throw new MeteoraException($"{outFolder}: output folder exists and is not empty; choose another --out");
        var baseConfig = LlamaConfig.Load(baseFolder);
        var adapters = adapterFolders.Select(f => LoraAdapter.Load(f, baseConfig)).ToList();
        try
        {
            var dup = adapters.GroupBy(a => a.Name).FirstOrDefault(g => g.Count() > 1);
            if (dup is not null) throw new MeteoraException($"convert: two adapter folders are named '{dup.Key}'");
            using var file = SafeTensorsFile.Open(originalFile);
            CheckBase(file, baseFolder);

            int n = adapters.Count;
            var gates = new List<(string Key, Tensor Gate)>();
            var changed = new HashSet<int>();
            var trained = adapters.Select(_ => new Dictionary<string, (Tensor A, Tensor B)>()).ToList();
            foreach (var site in LoraAdapter.Sites(baseConfig))
            {
                string gateName = $"{Prefix}{site.Key}.moe_gate.weight";
                if (!file.Entries.ContainsKey(gateName)) continue;
                var g = file.Get(gateName);
                if (g.Shape.Length != 2 || g.Shape[0] != n || g.Shape[1] != site.InFeatures)
                    throw new MeteoraException($"{originalFile}: '{gateName}' has shape {g.ShapeText}, expected ({n}, {site.InFeatures}) for {n} adapters");
                gates.Add((site.Key, file.Load(gateName, ScalarType.Float32)));
                CompareStacked(file, originalFile, site, adapters, changed, trained);
            }
            if (gates.Count == 0) throw new MeteoraException($"{originalFile}: no moe_gate tensors (not an original MeteoRA checkpoint?)");
            var targets = ProjectionSite.AllNames.Where(name => gates.Any(g => g.Key.EndsWith("." + name))).ToList();

            // Trained adapters: same config, weights from the stacked tensors (targets where the folder had weights).
            var embedded = changed.Order().Select(i => new LoraAdapter(adapters[i].Name, adapters[i].Folder, adapters[i].Config, trained[i])).ToList();
            string temp = $"{Path.GetFullPath(outFolder).TrimEnd('/')}.tmp-{Guid.NewGuid():N}";
            try
            {
                Directory.CreateDirectory(temp);
                new MeteoraCheckpointConfig
                {
                    BaseModel = Path.GetFullPath(baseFolder),
                    Adapters = adapters.Select((a, i) => new MeteoraAdapterRef(a.Name, changed.Contains(i) ? null : Path.GetFullPath(adapterFolders[i]))).ToList(),
                    TargetModules = targets, TopK = Math.Min(topK, n), Temperature = temperature,
                }.Save(temp);
                MeteoraCheckpoint.SaveGates(temp, gates);
                if (embedded.Count > 0) MeteoraCheckpoint.SaveAdapters(temp, embedded);
                if (Directory.Exists(outFolder)) Directory.Delete(outFolder);
                Directory.Move(temp, outFolder);
            }
            finally
            {
                if (Directory.Exists(temp)) Directory.Delete(temp, true);
                foreach (var (_, t) in gates) t.Dispose();
                foreach (var (x, y) in trained.SelectMany(d => d.Values)) { x.Dispose(); y.Dispose(); }
            }
            var changedNames = changed.Order().Select(i => adapters[i].Name).ToList();
            log?.Invoke($"converted {gates.Count} gates of {n} adapters ({string.Join(", ", adapters.Select(a => a.Name))}) into {outFolder}" +
                        (changedNames.Count > 0 ? $"; adapters changed by training, kept in {MeteoraCheckpoint.AdaptersFile}: {string.Join(", ", changedNames)}" : "; no adapter was changed by training"));
            return new ConversionReport(gates.Count, targets, changedNames);
        }
        finally
        {
            foreach (var a in adapters) a.Dispose();
        }
    }

    /// <summary>A cheap check that the original was built on this base: the final norm weights must agree.</summary>
    private static void CheckBase(SafeTensorsFile file, string baseFolder)
    {
        const string name = "model.norm.weight";
        if (!file.Entries.ContainsKey(Prefix + name)) return;
        using var files = CheckpointFiles.Open(baseFolder);
        using var scope = NewDisposeScope();
        var ours = empty(files.Entry(name).Shape, ScalarType.Float32);
        files.ReadInto(name, ours);
        var theirs = file.Load(Prefix + name, ScalarType.Float32);
        if (!ours.shape.SequenceEqual(theirs.shape) || !ours.allclose(theirs, 1e-3, 1e-3))
            throw new MeteoraException($"{file.Path}: '{Prefix}{name}' differs from the base at {baseFolder} (converted against another base?)");
    }

    /// <summary>Slices adapter i out of the stacked A/B and compares it with the adapter folder.</summary>
    private static void CompareStacked(SafeTensorsFile file, string path, ProjectionSite site, List<LoraAdapter> adapters,
        HashSet<int> changed, List<Dictionary<string, (Tensor A, Tensor B)>> trained)
    {
        string aName = $"{Prefix}{site.Key}.lora_A.weight", bName = $"{Prefix}{site.Key}.lora_B.weight";
        if (!file.Entries.ContainsKey(aName) || !file.Entries.ContainsKey(bName))
            throw new MeteoraException($"{path}: '{site.Key}' has a gate but no stacked lora_A/lora_B");
        var ranks = adapters.Select(a => a.Weights.TryGetValue(site.Key, out var w) ? (int)w.A.shape[0] : a.Config.R).ToArray();
        int total = ranks.Sum();
        using var scope = NewDisposeScope();
        var a = file.Load(aName, ScalarType.Float32);
        var b = file.Load(bName, ScalarType.Float32);
        if (!a.shape.SequenceEqual(new long[] { total, site.InFeatures }) || !b.shape.SequenceEqual(new long[] { site.OutFeatures, total }))
            throw new MeteoraException($"{path}: stacked '{aName}' ({string.Join(", ", a.shape)}) / lora_B ({string.Join(", ", b.shape)}) do not hold ranks {string.Join("+", ranks)} of {site.Key}");
        int offset = 0;
        for (int i = 0; i < adapters.Count; i++)
        {
            var ai = a.narrow(0, offset, ranks[i]);
            var bi = b.narrow(1, offset, ranks[i]);
            offset += ranks[i];
            if (adapters[i].Weights.TryGetValue(site.Key, out var w))
            {
                if (!ai.allclose(w.A, 1e-5, 1e-7) || !bi.allclose(w.B, 1e-5, 1e-7)) changed.Add(i);
                trained[i][site.Key] = (ai.clone().DetachFromDisposeScope(), bi.clone().DetachFromDisposeScope());
            }
            else if (ai.abs().max().item<float>() != 0 && bi.abs().max().item<float>() != 0)
                throw new MeteoraException($"{path}: adapter '{adapters[i].Name}' has non-zero weights at {site.Key}, which its folder does not target");
        }
    }
}
