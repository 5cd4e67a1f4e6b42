using Meteora.Llama;
using static TorchSharp.torch;

namespace Meteora.Lora;

/// <summary>Builds a base model with one LoRA adapter applied (unmerged) to the projections it targets.</summary>
public static class LoraModel
{
    /// <summary>
    /// Loads <paramref name="baseFolder"/> with the adapter at <paramref name="adapterFolder"/>. Adapter weights
    /// go to <paramref name="adapterDtype"/> (default: the model dtype).
    /// </summary>
    public static LlamaForCausalLM Load(string baseFolder, string adapterFolder, Device device, ScalarType dtype,
        ScalarType? adapterDtype = null)
    {
        var config = LlamaConfig.Load(baseFolder);
        using var adapter = LoraAdapter.Load(adapterFolder, config);
        var lm = LlamaLoader.Load(baseFolder, device, dtype, Factory(adapter.Config, adapter.Targets, dtype, adapterDtype ?? dtype, device));
        CopyWeights(lm, adapter);
        return lm;
    }

    /// <summary>A projection factory: <see cref="LoraLinear"/> where <paramref name="targets"/> says, plain otherwise.</summary>
    public static Func<ProjectionSite, Linear> Factory(LoraConfig config, Func<ProjectionSite, bool> targets,
        ScalarType dtype, ScalarType adapterDtype, Device device) =>
        site => targets(site)
            ? new LoraLinear(site, config.R, config.Scale, config.LoraDropout, dtype, adapterDtype, device)
            : new Linear(site, dtype, device);

    /// <summary>Copies the adapter's A and B into the model's <see cref="LoraLinear"/> projections.</summary>
    public static void CopyWeights(LlamaForCausalLM lm, LoraAdapter adapter)
    {
        using var noGrad = no_grad();
        foreach (var p in lm.Projections().OfType<LoraLinear>())
        {
            var (a, b) = adapter.Weights[p.Site.Key];
            p.lora_A.copy_(a);
            p.lora_B.copy_(b);
        }
    }

    /// <summary>The LoRA projections of a model with their A and B, for saving.</summary>
    public static IEnumerable<(string Key, Tensor A, Tensor B)> Weights(LlamaForCausalLM lm) =>
        lm.Projections().OfType<LoraLinear>().Select(p => (p.Site.Key, (Tensor)p.lora_A, (Tensor)p.lora_B));
}
