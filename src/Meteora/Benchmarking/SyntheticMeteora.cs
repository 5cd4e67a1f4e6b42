using Meteora.Llama;
using Meteora.Moe;
using static TorchSharp.torch;

namespace Meteora.Benchmarking;

/// <summary>A MeteoRA model with random weights at any size (benchmarks): random base, L random rank-r adapters on all 7 projections, random gates.</summary>
public static class SyntheticMeteora
{
    public static MeteoraModel Build(LlamaConfig config, int adapters, int rank, Device device, ScalarType dtype)
    {
        var loras = SyntheticAdapters.Create(config, adapters, rank, ProjectionSite.AllNames, seed: 1);
        var m = MeteoraModel.Build(factory =>
        {
            var lm = new LlamaForCausalLM(config, dtype, device, factory);
            lm.InitializeRandom(seed: 0);
            return lm;
        }, loras, ProjectionSite.AllNames, device, dtype);
        using (no_grad())
        {
            using var gen = new Generator(3);
            foreach (var g in m.Projections)
                g.moe_gate.copy_(empty(g.moe_gate.shape).normal_(0, 1 / Math.Sqrt(g.Site.InFeatures), gen));
        }
        m.SyncGates();
        return m;
    }
}
