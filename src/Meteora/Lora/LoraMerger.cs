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
                p.weight.copy_((p.weight.to(ScalarType.Float32) + delta).to(dtype));
                merged++;
            }
        }
        Directory.CreateDirectory(outFolder);
        foreach (var f in Directory.GetFiles(baseFolder))
        {
            string name = Path.GetFileName(f);
            if (name.StartsWith("model") && (name.EndsWith(".safetensors") || name.EndsWith(".index.json"))) continue;
            if (name.EndsWith(".bin")) continue;
            File.Copy(f, Path.Combine(outFolder, name), overwrite: true);
        }
        SafeTensorsWriter.Write(Path.Combine(outFolder, "model.safetensors"),
            lm.BaseWeights().Select(w => new KeyValuePair<string, Tensor>(w.Name, w.Tensor)),
            new Dictionary<string, string> { ["format"] = "pt" });
        log?.Invoke($"merged {merged} projections of {adapterFolder} into {outFolder}");
    }
}
