using Meteora.IO;
using static TorchSharp.torch;

namespace Meteora.Llama;

/// <summary>Loads a Hugging Face LLaMA folder into a <see cref="LlamaForCausalLM"/> on any device and dtype.</summary>
public static class LlamaLoader
{
    /// <summary>
    /// Reads <c>config.json</c>, allocates the model on <paramref name="device"/> in <paramref name="dtype"/> and
    /// streams each weight into place (converting dtype on the fly). Every required tensor must be present with
    /// the shape the config implies.
    /// </summary>
    public static LlamaForCausalLM Load(string folder, Device device, ScalarType dtype,
        Func<ProjectionSite, Linear>? makeProjection = null)
    {
        ArtifactCard.VerifyIfPresent(folder);   // a shipped (sealed) model: every file as built, or a one-line error
        var config = LlamaConfig.Load(folder);
        using var files = CheckpointFiles.Open(folder);
        // Allocation is lazy (empty); every name and shape is checked before any data is read.
        var model = new LlamaForCausalLM(config, dtype, device, makeProjection);
        try
        {
            var weights = model.BaseWeights().ToList();
            foreach (var (name, tensor) in weights)
            {
                var entry = files.Entry(name);
                if (!entry.Shape.SequenceEqual(tensor.shape))
                    throw new MeteoraException($"{Path.Combine(folder, "config.json")}: tensor '{name}' has shape {entry.ShapeText} but config.json implies ({string.Join(", ", tensor.shape)})");
            }
            foreach (var (name, tensor) in weights) files.ReadInto(name, tensor);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
