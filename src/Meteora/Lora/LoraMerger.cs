using Meteora.Runtime;
using Meteora.IO;
using Meteora.Llama;
using static TorchSharp.torch;

namespace Meteora.Lora;

/// <summary>
/// Folds one adapter into its base (<c>W ← W + scale · B A</c>, computed in float32) and writes the result as a
/// normal Hugging Face folder: the base's config, tokenizer and generation files, and a new model.safetensors in
/// the base's dtype.
/// </summary>
public static class LoraMerger
{
    /// <summary>Writes <paramref name="baseFolder"/> with the adapter in <paramref name="adapterFolder"/> folded in to <paramref name="outFolder"/>.</summary>
    public static void Merge(string baseFolder, string adapterFolder, string outFolder, Action<string>? log = null)
    {
        if (Path.GetFullPath(outFolder).TrimEnd('/') == Path.GetFullPath(baseFolder).TrimEnd('/'))
            throw new MeteoraException($"{outFolder}: the output folder must differ from the base folder");
        var config = LlamaConfig.Load(baseFolder);
        // Keep the checkpoint's own dtype (float32 unless the config or the weights say otherwise).
        ScalarType dtype;
        using (var files = CheckpointFiles.Open(baseFolder)) dtype = files.Entry("model.embed_tokens.weight").DType;
        using var lm = LoraModel.Load(baseFolder, adapterFolder, CPU, dtype, ScalarType.Float32);
        int merged = 0;
        using (no_grad())
        {
            foreach (var p in lm.Projections().OfType<LoraLinear>())
            {
                using var delta = p.Delta();
                FoldInto(p, delta);
                merged++;
            }
        }
        Directory.CreateDirectory(outFolder);
        foreach (var f in Directory.GetFiles(baseFolder))
        {
            string name = Path.GetFileName(f);
            if (name.StartsWith("model") && (name.EndsWith(".safetensors") || name.EndsWith(".index.json"))) continue;
            if (name.EndsWith(".bin")) continue;
            if (name is ArtifactCard.FileName or "README.md") continue;   // the base's seal and model card describe other weights
            File.Copy(f, Path.Combine(outFolder, name), overwrite: true);
        }
        SafeTensorsWriter.Write(Path.Combine(outFolder, "model.safetensors"),
            lm.BaseWeights().Select(w => new KeyValuePair<string, Tensor>(w.Name, w.Tensor)),
            new Dictionary<string, string> { ["format"] = "pt" });
        log?.Invoke($"merged {merged} projections of {adapterFolder} into {outFolder}");
    }

    /// <summary>
    /// The average-merge baseline: folds every adapter into <paramref name="lm"/>'s base weights in place with
    /// weight 1/N, <c>W ← W + (1/N) Σ_i scale_i · B_i A_i</c> (computed in float32). Projections an adapter does
    /// not target get nothing from it. Returns the number of projections changed.
    /// </summary>
    public static int AverageMerge(LlamaForCausalLM lm, IReadOnlyList<LoraAdapter> adapters)
    {
        if (adapters.Count == 0) throw new MeteoraException("average merge: no adapters given");
        int changed = 0;
        using var noGrad = no_grad();
        foreach (var p in lm.Projections())
        {
            using var scope = NewDisposeScope();
            Tensor? sum = null;                                                      // (out, in) float32
            foreach (var a in adapters)
            {
                if (!a.Weights.TryGetValue(p.Site.Key, out var w)) continue;
                var delta = w.B.matmul(w.A) * a.Config.Scale;
                sum = sum is null ? delta : sum.add_(delta, HeldScalars.One);
            }
            if (sum is null) continue;
            FoldInto(p, sum / adapters.Count);
            changed++;
        }
        return changed;
    }

    /// <summary>
    /// The average-merge baseline as a model: the base loaded on <paramref name="device"/> with every adapter in
    /// <paramref name="adapterFolders"/> folded in by <see cref="AverageMerge"/>. Returns it and the number of
    /// projections changed.
    /// </summary>
    public static (LlamaForCausalLM Model, int Changed) LoadAverageMerged(string baseFolder, IReadOnlyList<string> adapterFolders,
        Device device, ScalarType dtype)
    {
        var lm = LlamaLoader.Load(baseFolder, device, dtype);
        var adapters = new List<LoraAdapter>();
        try
        {
            foreach (var f in adapterFolders) adapters.Add(LoraAdapter.Load(f, lm.Config));
            return (lm, AverageMerge(lm, adapters));
        }
        catch { lm.Dispose(); throw; }
        finally { foreach (var a in adapters) a.Dispose(); }
    }

    /// <summary>
    /// W ← W + delta, added in float32 and stored back in the weight's dtype. delta: (out, in) float32, on any device
    /// (adapters are loaded on the CPU; the weight may live on a GPU).
    /// </summary>
    private static void FoldInto(Linear p, Tensor delta)
    {
        using var scope = NewDisposeScope();
        p.weight.copy_((p.weight.to(ScalarType.Float32) + delta.to(p.weight.device)).to(p.weight.dtype));
    }
}
