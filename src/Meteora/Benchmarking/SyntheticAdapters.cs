using Meteora.Llama;
using Meteora.Lora;
using static TorchSharp.torch;

namespace Meteora.Benchmarking;

/// <summary>Random LoRA adapters at any model size, for benchmarks (no files).</summary>
public static class SyntheticAdapters
{
    /// <summary>
    /// <paramref name="count"/> rank-<paramref name="rank"/> adapters on <paramref name="targets"/> of every layer:
    /// A ~ N(0, 1/in), B ~ N(0, 0.02²), alpha = 2r, float32 on the CPU.
    /// </summary>
    public static List<LoraAdapter> Create(LlamaConfig config, int count, int rank, IReadOnlyList<string> targets, long seed)
    {
        using var gen = new Generator((ulong)seed);
        var cfg = new LoraConfig { R = rank, LoraAlpha = 2 * rank, TargetModules = targets };
        var sites = LoraAdapter.Sites(config).Where(cfg.Targets).ToList();
        return Enumerable.Range(0, count).Select(i =>
        {
            var weights = sites.ToDictionary(s => s.Key, s => (
                empty(rank, s.InFeatures).normal_(0, 1 / Math.Sqrt(s.InFeatures), gen),
                empty(s.OutFeatures, rank).normal_(0, 0.02, gen)));
            return new LoraAdapter($"task{i:D2}", "(synthetic)", cfg, weights);
        }).ToList();
    }
}
