using Meteora.Llama;
using static TorchSharp.torch;

namespace Meteora.Benchmarking;

/// <summary>One measured configuration: prefill and decode throughput of a model variant.</summary>
public sealed record ModelBenchResult(string Variant, int Batch, int PromptLength, int NewTokens,
    double PrefillSeconds, double DecodeSeconds)
{
    public double PrefillTokensPerSecond => Batch * PromptLength / PrefillSeconds;
    public double DecodeTokensPerSecond => Batch * NewTokens / DecodeSeconds;
}

/// <summary>
/// Prefill and decode throughput of a <see cref="LlamaForCausalLM"/> through the same static-KV-cache path that
/// generation uses. Prefill: one forward over (B, P) prompt tokens, last-position logits. Decode: N greedy
/// steps after a prefill, each picking the argmax and copying it to the host as generation does.
/// </summary>
public static class ModelBenchmark
{
    public static ModelBenchResult Run(LlamaForCausalLM lm, string variant, int batch, int promptLength, int newTokens,
        int warmup, int runs, long seed = 0)
    {
        using var noGrad = no_grad();
        var device = lm.Device;
        using var cache = new KvCache(lm.Config, batch, promptLength + newTokens, lm.DType, device);
        using var gen = new Generator((ulong)seed);
        using var ids = randint(0, lm.Config.VocabSize, [batch, promptLength], generator: gen).to(device);
        using var positions = arange(promptLength, ScalarType.Int64, device).unsqueeze(0).expand(batch, -1).contiguous();

        Tensor Prefill()
        {
            cache.Length = 0;
            return lm.forward(ids, positions, cache, lastOnly: true);       // (B, V)
        }

        double prefill = DeviceClock.Median(device, warmup, runs, () => { using var _ = Prefill(); });

        var decodeTimes = new List<double>();
        for (int r = 0; r < warmup + runs; r++)
        {
            using var scope = NewDisposeScope();
            var next = Prefill().argmax(-1).view(batch, 1);                  // (B, 1)
            var pos = positions.narrow(1, promptLength - 1, 1);
            double seconds = DeviceClock.Time(device, () =>
            {
                for (int s = 0; s < newTokens; s++)
                {
                    using var step = NewDisposeScope();
                    pos = (pos + 1).MoveToOuterDisposeScope();
                    next = lm.forward(next, pos, cache, lastOnly: true).argmax(-1).view(batch, 1).MoveToOuterDisposeScope();
                    _ = next.cpu();                                             // generation reads every token on the host
                }
            });
            if (r >= warmup) decodeTimes.Add(seconds);
        }
        double decode = DeviceClock.MedianOf(decodeTimes);
        return new ModelBenchResult(variant, batch, promptLength, newTokens, prefill, decode);
    }
}
