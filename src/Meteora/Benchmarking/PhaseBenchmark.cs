using Meteora.Generation;
using Meteora.Llama;
using Meteora.Runtime;
using static TorchSharp.torch;

namespace Meteora.Benchmarking;

/// <summary>One phase of a forward pass: its GPU time per pass (summed over layers, median over runs) and how often it runs per pass.</summary>
public sealed record PhaseTime(string Phase, double Ms, int PerPass);

/// <summary>
/// Where one pass's GPU time goes (<see cref="PhaseBenchmark"/>). <see cref="MarkedMs"/> is the sum of the phases
/// (the pass as timed with its marks); <see cref="UnmarkedMs"/> the same pass timed whole without marks, so the
/// marks' own cost shows as the difference.
/// </summary>
public sealed record PhaseBreakdown(string Pass, int Batch, int Tokens, double MarkedMs, double UnmarkedMs, IReadOnlyList<PhaseTime> Phases);

/// <summary>
/// Per-phase GPU time of a prefill and of a decode step (issue #17, item 1: find where the time goes), from CUDA events
/// recorded at the model's phase boundaries (<see cref="PhaseMarks"/>): norms, the q/k/v, o, gate/up and down
/// projections (with their adapters and routing, for a MeteoRA model), rotary, the KV-cache write, attention, SiLU·up,
/// residual adds, embedding, LM head. Decode is a CUDA graph replayed per step, as generation runs it on CUDA, with
/// the events captured into the graph; prefill runs eagerly, as it does in generation.
/// </summary>
public static class PhaseBenchmark
{
    /// <summary>Marks one pass records at most: eleven per decoder layer and a few around them.</summary>
    private static int Capacity(LlamaForCausalLM lm) => 11 * lm.Config.NumHiddenLayers + 16;

    public static PhaseBreakdown Prefill(LlamaForCausalLM lm, int batch, int promptLength, int warmup, int runs)
    {
        using var noGrad = no_grad();
        using var cache = new KvCache(lm.Config, batch, promptLength, lm.DType, lm.Device);
        using var ids = ModelBenchmark.RandomIds(lm, batch, promptLength);
        using var positions = ModelBenchmark.Positions(lm, batch, promptLength);
        void Pass() { cache.Length = 0; using var _ = lm.forward(ids, positions, cache, lastOnly: true); }
        double unmarked = DeviceClock.Median(lm.Device, warmup, runs, Pass) * 1e3;
        var perRun = new List<List<(string, double)>>();
        try
        {
            for (int r = 0; r < runs; r++)
            {
                PhaseMarks.Arm(DeviceIndex(lm), Capacity(lm));
                Pass();
                PhaseMarks.Disarm();
                perRun.Add(PhaseMarks.Read());
            }
        }
        finally { PhaseMarks.Release(); }
        return Summarise("prefill", batch, promptLength, unmarked, perRun);
    }

    /// <summary>A decode step after a <paramref name="promptLength"/>-token prefill, replayed as a CUDA graph.</summary>
    public static PhaseBreakdown Decode(LlamaForCausalLM lm, int batch, int promptLength, int warmup, int runs)
    {
        using var noGrad = no_grad();
        int steps = warmup + runs + 2;
        double unmarked;
        using (var plainCache = new KvCache(lm.Config, batch, promptLength + steps, lm.DType, lm.Device))
        using (var plain = Decoder(lm, plainCache, batch, promptLength))
        {
            for (int s = 0; s < Math.Max(2, warmup); s++) plain.Step();
            var times = new List<double>();
            for (int r = 0; r < runs; r++) times.Add(DeviceClock.Time(lm.Device, () => plain.Step()));
            unmarked = DeviceClock.MedianOf(times) * 1e3;
        }
        var perRun = new List<List<(string, double)>>();
        try
        {
            using var cache = new KvCache(lm.Config, batch, promptLength + steps, lm.DType, lm.Device);
            using var decoder = Decoder(lm, cache, batch, promptLength);   // disposed (its graph first) before the cache
            decoder.Step();                                    // eager warm-up on the capture stream
            PhaseMarks.Arm(DeviceIndex(lm), Capacity(lm));
            decoder.Step();                                    // captured with the marks as graph nodes, then replayed
            PhaseMarks.Disarm();
            for (int s = 0; s < warmup; s++) { decoder.Step(); PhaseMarks.Read(); }
            for (int r = 0; r < runs; r++) { decoder.Step(); perRun.Add(PhaseMarks.Read()); }
        }
        finally { PhaseMarks.Release(); }
        return Summarise("decode", batch, 1, unmarked, perRun);
    }

    /// <summary>A graphed decoder on <paramref name="cache"/> after a prefill of random ids.</summary>
    private static StaticDecoder Decoder(LlamaForCausalLM lm, KvCache cache, int batch, int promptLength)
    {
        using var scope = NewDisposeScope();
        using var ids = ModelBenchmark.RandomIds(lm, batch, promptLength);
        using var positions = ModelBenchmark.Positions(lm, batch, promptLength);
        var next = lm.forward(ids, positions, cache, lastOnly: true).argmax(-1).view(batch, 1);   // (B, 1)
        var decoder = new StaticDecoder(lm, cache, useGraph: true);
        decoder.Start(next, positions.narrow(1, promptLength - 1, 1) + 1);
        return decoder;
    }

    private static int DeviceIndex(LlamaForCausalLM lm) => lm.Device.index < 0 ? 0 : lm.Device.index;

    /// <summary>Per run, each phase's summed time; then the median over runs per phase, in first-seen order.</summary>
    private static PhaseBreakdown Summarise(string pass, int batch, int tokens, double unmarkedMs, List<List<(string Phase, double Ms)>> runs)
    {
        var order = runs[0].Select(x => x.Phase).Distinct().ToList();
        var phases = order.Select(name => new PhaseTime(name,
            DeviceClock.MedianOf(runs.Select(run => run.Where(x => x.Phase == name).Sum(x => x.Ms))),
            runs[0].Count(x => x.Phase == name))).ToList();
        return new PhaseBreakdown(pass, batch, tokens, phases.Sum(p => p.Ms), unmarkedMs, phases);
    }
}
