using Meteora.Generation;
using Meteora.Llama;
using Meteora.Runtime;
using static TorchSharp.torch;

namespace Meteora.Benchmarking;

/// <summary>Prefill or decode throughput of one model variant, with the device memory peak when known.</summary>
public sealed record ModelBenchResult(string Variant, string Phase, int Batch, int PromptLength, int NewTokens,
    double Seconds, long? PeakBytes)
{
    /// <summary>Tokens per second: prompt tokens for prefill, generated tokens for decode (eager or CUDA graph).</summary>
    public double TokensPerSecond => Batch * (Phase == "prefill" ? PromptLength : NewTokens) / Seconds;
}

/// <summary>
/// Throughput of a <see cref="LlamaForCausalLM"/> through the static-KV-cache path that generation uses.
/// Prefill: one forward over (B, P) prompt tokens, last-position logits; median of the runs after warm-up.
/// Decode: greedy steps after a prefill, each taking the argmax and copying it to the host as generation does;
/// median of the timed steps. Device memory is the pool's high-water mark during the measurement (with the
/// cudaMallocAsync backend).
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

    /// <summary>
    /// Decode throughput: one prefill, <paramref name="warmup"/> untimed steps, then <paramref name="steps"/> timed
    /// steps. <paramref name="perStep"/>: each step is synchronised and timed on its own and the median step time
    /// gives tokens/s; otherwise the timed steps run back to back (each still reading its token on the host, as
    /// generation does) and their total time gives tokens/s. <paramref name="graph"/>: steps go through a
    /// <see cref="StaticDecoder"/> replaying a CUDA graph (captured during the warm-up steps, so warmup ≥ 2);
    /// otherwise through the eager <c>forward</c> that generation uses.
    /// </summary>
    public static ModelBenchResult Decode(LlamaForCausalLM lm, string variant, int batch, int promptLength, int steps, int warmup,
        bool perStep = true, bool graph = false)
    {
        using var noGrad = no_grad();
        if (graph) warmup = Math.Max(warmup, 2);
        using var cache = new KvCache(lm.Config, batch, promptLength + warmup + steps, lm.DType, lm.Device);
        using var ids = RandomIds(lm, batch, promptLength);
        using var positions = Positions(lm, batch, promptLength);
        CudaRuntime.ResetPoolPeak();
        using var scope = NewDisposeScope();
        var next = lm.forward(ids, positions, cache, lastOnly: true).argmax(-1).view(batch, 1);   // (B, 1)
        var pos = positions.narrow(1, promptLength - 1, 1);
        using var decoder = graph ? new StaticDecoder(lm, cache, useGraph: true) : null;
        decoder?.Start(next, pos + 1);
        void Step()
        {
            using var step = NewDisposeScope();
            if (decoder is not null)
            {
                var chosen = decoder.Step().argmax(-1);                             // (B,)
                _ = chosen.cpu();                                                   // generation reads every token on the host
                decoder.Feed(chosen);
                return;
            }
            pos = (pos + 1).MoveToOuterDisposeScope();
            next = lm.forward(next, pos, cache, lastOnly: true).argmax(-1).view(batch, 1).MoveToOuterDisposeScope();
            _ = next.cpu();
        }
        for (int s = 0; s < warmup; s++) Step();
        double seconds;
        if (perStep)
        {
            var times = new List<double>();
            for (int s = 0; s < steps; s++) times.Add(DeviceClock.Time(lm.Device, Step));
            // Seconds for all steps at the median step time, so TokensPerSecond = batch / median step.
            seconds = DeviceClock.MedianOf(times) * steps;
        }
        else
            seconds = DeviceClock.Time(lm.Device, () => { for (int s = 0; s < steps; s++) Step(); });
        return new ModelBenchResult(variant, graph ? "decode-graph" : "decode", batch, promptLength, steps, seconds, CudaRuntime.PoolPeakBytes());
    }

    internal static Tensor RandomIds(LlamaForCausalLM lm, int batch, int length)
    {
        using var gen = new Generator(0);
        using var cpu = randint(0, lm.Config.VocabSize, [batch, length], generator: gen);
        return cpu.to(lm.Device).DetachFromDisposeScope();
    }

    internal static Tensor Positions(LlamaForCausalLM lm, int batch, int length) =>
        arange(length, ScalarType.Int64, lm.Device).unsqueeze(0).expand(batch, -1).contiguous().DetachFromDisposeScope();
}
