using Meteora.Llama;
using Meteora.Runtime;
using static TorchSharp.torch;

namespace Meteora.Benchmarking;

/// <summary>Prefill or decode throughput of one model variant, with the device memory peak when known.</summary>
public sealed record ModelBenchResult(string Variant, string Phase, int Batch, int PromptLength, int NewTokens,
    double Seconds, long? PeakBytes)
{
    /// <summary>Tokens per second: prompt tokens for prefill, generated tokens for decode.</summary>
    public double TokensPerSecond => Batch * (Phase == "prefill" ? PromptLength : NewTokens) / Seconds;
}

/// <summary>
/// Throughput of a <see cref="LlamaForCausalLM"/> through the static-KV-cache path that generation uses.
/// Prefill: one forward over (B, P) prompt tokens, last-position logits. Decode: N greedy steps after a prefill,
/// each taking the argmax and copying it to the host as generation does. Median of the runs after warm-up; device
/// memory is the pool's high-water mark during the measurement (with the cudaMallocAsync backend).
/// </summary>
public static class ModelBenchmark
{
    public static ModelBenchResult Prefill(LlamaForCausalLM lm, string variant, int batch, int promptLength, int warmup, int runs)
    {
        using var noGrad = no_grad();
        using var cache = new KvCache(lm.Config, batch, promptLength, lm.DType, lm.Device);
        using var ids = RandomIds(lm, batch, promptLength);
        using var positions = Positions(lm, batch, promptLength);
        CudaRuntime.ResetPoolPeak();
        double seconds = DeviceClock.Median(lm.Device, warmup, runs, () =>
        {
            cache.Length = 0;
            using var _ = lm.forward(ids, positions, cache, lastOnly: true);
        });
        return new ModelBenchResult(variant, "prefill", batch, promptLength, 0, seconds, CudaRuntime.PoolPeakBytes());
    }

    public static ModelBenchResult Decode(LlamaForCausalLM lm, string variant, int batch, int promptLength, int newTokens, int warmup, int runs)
    {
        using var noGrad = no_grad();
        using var cache = new KvCache(lm.Config, batch, promptLength + newTokens, lm.DType, lm.Device);
        using var ids = RandomIds(lm, batch, promptLength);
        using var positions = Positions(lm, batch, promptLength);
        CudaRuntime.ResetPoolPeak();
        var times = new List<double>();
        for (int r = 0; r < warmup + runs; r++)
        {
            using var scope = NewDisposeScope();
            cache.Length = 0;
            var next = lm.forward(ids, positions, cache, lastOnly: true).argmax(-1).view(batch, 1);   // (B, 1)
            var pos = positions.narrow(1, promptLength - 1, 1);
            double seconds = DeviceClock.Time(lm.Device, () =>
            {
                for (int s = 0; s < newTokens; s++)
                {
                    using var step = NewDisposeScope();
                    pos = (pos + 1).MoveToOuterDisposeScope();
                    next = lm.forward(next, pos, cache, lastOnly: true).argmax(-1).view(batch, 1).MoveToOuterDisposeScope();
                    _ = next.cpu();                                             // generation reads every token on the host
                }
            });
            if (r >= warmup) times.Add(seconds);
        }
        return new ModelBenchResult(variant, "decode", batch, promptLength, newTokens, DeviceClock.MedianOf(times), CudaRuntime.PoolPeakBytes());
    }

    private static Tensor RandomIds(LlamaForCausalLM lm, int batch, int length)
    {
        using var gen = new Generator(0);
        using var cpu = randint(0, lm.Config.VocabSize, [batch, length], generator: gen);
        return cpu.to(lm.Device).DetachFromDisposeScope();
    }

    private static Tensor Positions(LlamaForCausalLM lm, int batch, int length) =>
        arange(length, ScalarType.Int64, lm.Device).unsqueeze(0).expand(batch, -1).contiguous().DetachFromDisposeScope();
}
