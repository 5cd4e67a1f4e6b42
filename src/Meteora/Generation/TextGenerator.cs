using Meteora.Llama;
using Meteora.Moe;
using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Generation;

/// <summary>
/// Batched autoregressive generation over the static KV cache: one prefill of the left-padded prompts, then one
/// decode step per new token. Callers see each step's tokens through a callback (for streaming).
/// </summary>
public sealed class TextGenerator
{
    private readonly LlamaForCausalLM _model;

    public TextGenerator(LlamaForCausalLM model) => _model = model;

    /// <summary>
    /// Generates for every prompt (token ids, BOS included). <paramref name="onStep"/> receives the step index and
    /// the tokens chosen for each row (-1 for rows that already stopped). Returns the new tokens per row.
    /// </summary>
    public int[][] Generate(IReadOnlyList<int[]> prompts, GenerationOptions options, Action<int, int[]>? onStep = null)
    {
        options.Validate();
        if (prompts.Count == 0) return [];
        if (prompts.Any(p => p.Length == 0)) throw new MeteoraException("generate: a prompt has no tokens");
        int B = prompts.Count, T = prompts.Max(p => p.Length);
        var device = _model.Device;
        var results = Enumerable.Range(0, B).Select(_ => new List<int>()).ToArray();
        if (options.MaxNewTokens == 0) return results.Select(r => r.ToArray()).ToArray();

        using var noGrad = no_grad();
        using var cache = new KvCache(_model.Config, B, T + options.MaxNewTokens, _model.DType, device);
        using var sampler = new TokenSampler(options);
        var eos = options.EosIds.ToHashSet();
        var done = new bool[B];

        Tensor logits, positions;
        using (var scope = NewDisposeScope())
        {
            var (ids, mask) = LeftPad(prompts, T, PadId());
            var idsT = tensor(ids, [B, T], device: device);
            var maskT = tensor(mask, [B, T], device: device);
            if (mask.Any(m => m == 0)) cache.SetPadding(maskT);
            // Positions count real tokens only, so a padded row sees the same positions as it would alone.
            positions = (maskT.cumsum(1) - 1).clamp_min(0);                         // (B, T)
            logits = _model.forward(idsT, positions, cache, lastOnly: true);       // (B, V)
            positions = positions.narrow(1, T - 1, 1);                               // (B, 1) last position
            logits.MoveToOuterDisposeScope(); positions.MoveToOuterDisposeScope();
        }

        // Decode steps replay a CUDA graph where possible; the prefill above always runs eagerly.
        using var decoder = UseGraph(options, B) ? new StaticDecoder(_model, cache, useGraph: true) : null;
        bool ownLogits = true;   // false once logits is the decoder's output tensor
        for (int step = 0; step < options.MaxNewTokens; step++)
        {
            using var scope = NewDisposeScope();
            if (ownLogits) logits.MoveToOtherDisposeScope(scope);
            positions.MoveToOtherDisposeScope(scope);
            var next = sampler.Next(logits);                                         // (B,)
            var chosen = next.to(CPU).data<long>().Select(v => (int)v).ToArray();
            for (int b = 0; b < B; b++)
            {
                if (done[b]) { chosen[b] = -1; continue; }
                results[b].Add(chosen[b]);
                if (options.StopAtEos && eos.Contains(chosen[b])) done[b] = true;
                if (options.StopWhen?.Invoke(results[b]) == true) done[b] = true;
            }
            onStep?.Invoke(step, chosen);
            if (step == options.MaxNewTokens - 1 || done.All(d => d)) break;
            if (decoder is not null)
            {
                // The decoder advances positions itself: the host tensor is needed only to start it.
                if (step == 0) decoder.Start(next, positions + 1); else decoder.Feed(next);
                logits = decoder.Step();                                             // (B, V), the decoder's
                ownLogits = false;
            }
            else
            {
                positions = positions + 1;
                logits = _model.forward(next.view(B, 1), positions, cache, lastOnly: true);
            }
            if (ownLogits) logits.MoveToOuterDisposeScope();
            positions.MoveToOuterDisposeScope();
        }
        if (ownLogits) logits.Dispose();
        positions.Dispose();
        return results.Select(r => r.ToArray()).ToArray();
    }

    /// <summary>
    /// CUDA graphs need a CUDA model, a libtorch exporting them, no routing recorder (it copies to the host) and no
    /// projection mixing with a strategy that reads routing data on the host (<see cref="UncapturableStrategy"/>);
    /// for the last, decoding runs eagerly and <see cref="Notice"/> says so once per process.
    /// </summary>
    private bool UseGraph(GenerationOptions options, int batch)
    {
        if (!options.CudaGraph || _model.Device.type != DeviceType.CUDA || !CudaGraph.Available
            || _model.Projections().Any(p => p is MeteoraLinear { Recorder: not null }))
            return false;
        if (UncapturableStrategy(_model.Projections(), batch) is not { } strategy) return true;
        if (Interlocked.Exchange(ref _saidEager, 1) == 0)
            Notice($"generate: the {strategy.ToString().ToLowerInvariant()} mixing strategy syncs with the host, which a CUDA graph cannot capture; decoding without CUDA graphs");
        return false;
    }

    private static int _saidEager;

    /// <summary>Where generation's one-time notices go (default: standard error).</summary>
    public static Action<string> Notice { get; set; } = line => Console.Error.WriteLine(line);

    /// <summary>
    /// The first strategy a MeteoRA projection resolves to for a decode step of <paramref name="tokens"/> tokens that a
    /// CUDA graph cannot capture — loop and segment copy per-adapter token lists or counts to the host — or null.
    /// </summary>
    internal static MixingStrategy? UncapturableStrategy(IEnumerable<Linear> projections, long tokens) =>
        projections.OfType<MeteoraLinear>().Select(p => p.Resolve(tokens))
            .Where(s => s is MixingStrategy.Loop or MixingStrategy.Segment).Select(s => (MixingStrategy?)s).FirstOrDefault();

    private int PadId() => SpecialTokens.PadId(_model.Config);

    /// <summary>Left-pads rows to length <paramref name="T"/>; returns flat (B·T) ids and 0/1 mask.</summary>
    public static (long[] Ids, long[] Mask) LeftPad(IReadOnlyList<int[]> rows, int T, int padId)
    {
        var ids = new long[rows.Count * T];
        var mask = new long[rows.Count * T];
        for (int b = 0; b < rows.Count; b++)
        {
            int offset = T - rows[b].Length;
            for (int t = 0; t < T; t++)
            {
                bool real = t >= offset;
                ids[b * T + t] = real ? rows[b][t - offset] : padId;
                mask[b * T + t] = real ? 1 : 0;
            }
        }
        return (ids, mask);
    }
}
