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
        var cache = new KvCache(_model.Config, B, T + options.MaxNewTokens, _model.DType, device);
        try { return Decode(prompts, options, onStep, ref cache, B, T, results); }
        finally { cache.Dispose(); }   // the last cache: decoding replaces it when it drops finished rows
    }

    /// <summary>Times the last <see cref="Generate"/> dropped finished rows from its batch (for tests).</summary>
    internal int Compactions { get; private set; }
    /// <summary>Batches this generator has prefilled row by row (for tests).</summary>
    internal int RowByRowPrefills { get; private set; }

    /// <summary>Rows left once a greedy eager decode drops finished rows: at most this share of the current batch.</summary>
    private const double CompactBelow = 0.75;

    private int[][] Decode(IReadOnlyList<int[]> prompts, GenerationOptions options, Action<int, int[]>? onStep, ref KvCache cache,
        int B, int T, List<int>[] results)
    {
        var device = _model.Device;
        using var sampler = new TokenSampler(options);
        var eos = options.EosIds.ToHashSet();
        var done = new bool[B];
        // rows[i] = the prompt that row i of the cache, the logits and the positions now belongs to. Finished rows are
        // dropped from the batch (greedy eager decoding only: a CUDA graph keeps its batch, a sampled row's draws would
        // depend on which rows remain, and a routing recorder or per-row routing counts rows), so a long answer does
        // not keep every finished row computing: composite prompts, whose rows stop anywhere between a few and a few
        // hundred tokens, are where the evaluation's time goes.
        var rows = Enumerable.Range(0, B).ToArray();
        Compactions = 0;
        bool graph = UseGraph(options, B);
        bool compact = options.Greedy && !graph && !CountsRows();

        Tensor logits, positions;
        using (var scope = NewDisposeScope())
        {
            var (ids, mask) = LeftPad(prompts, T, PadId());
            var idsT = tensor(ids, [B, T], device: device);
            var maskT = tensor(mask, [B, T], device: device);
            bool padded = mask.Any(m => m == 0);
            if (padded) cache.SetPadding(maskT);
            // Positions count real tokens only, so a padded row sees the same positions as it would alone.
            positions = (maskT.cumsum(1) - 1).clamp_min(0);                         // (B, T)
            logits = padded && PrefillRowByRow(prompts)
                ? PrefillRows(prompts, T, cache)                                     // (B, V)
                : _model.forward(idsT, positions, cache, lastOnly: true);            // (B, V)
            positions = positions.narrow(1, T - 1, 1);                               // (B, 1) last position
            logits.MoveToOuterDisposeScope(); positions.MoveToOuterDisposeScope();
        }

        // Decode steps replay a CUDA graph where possible; the prefill above always runs eagerly.
        using var decoder = graph ? new StaticDecoder(_model, cache, useGraph: true) : null;
        bool ownLogits = true;   // false once logits is the decoder's output tensor
        for (int step = 0; step < options.MaxNewTokens; step++)
        {
            using var scope = NewDisposeScope();
            if (ownLogits) logits.MoveToOtherDisposeScope(scope);
            positions.MoveToOtherDisposeScope(scope);
            var next = sampler.Next(logits);                                         // (B',) for the B' rows left
            var picked = next.to(CPU).data<long>().Select(v => (int)v).ToArray();
            var chosen = Enumerable.Repeat(-1, B).ToArray();                         // (B,): -1 for stopped rows
            for (int i = 0; i < rows.Length; i++)
            {
                int b = rows[i];
                if (done[b]) continue;
                chosen[b] = picked[i];
                results[b].Add(chosen[b]);
                if (options.StopAtEos && eos.Contains(chosen[b])) done[b] = true;
                if (options.StopWhen?.Invoke(results[b]) == true) done[b] = true;
            }
            onStep?.Invoke(step, chosen);
            if (step == options.MaxNewTokens - 1 || done.All(d => d)) break;
            int live = rows.Count(b => !done[b]);
            if (compact && live <= CompactBelow * rows.Length)
            {
                Compactions++;
                var keepAt = Enumerable.Range(0, rows.Length).Where(i => !done[rows[i]]).Select(i => (long)i).ToArray();
                using var keep = tensor(keepAt, device: device);                      // (B'',) rows of the current batch
                var smaller = cache.SelectRows(keep);
                cache.Dispose();
                cache = smaller;
                next = next.index_select(0, keep);                                    // (B'',)
                positions = positions.index_select(0, keep);                          // (B'', 1)
                rows = keepAt.Select(i => rows[i]).ToArray();
            }
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
                logits = _model.forward(next.view(rows.Length, 1), positions, cache, lastOnly: true);   // (B', V)
            }
            if (ownLogits) logits.MoveToOuterDisposeScope();
            positions.MoveToOuterDisposeScope();
        }
        if (ownLogits) logits.Dispose();
        positions.Dispose();
        return results.Select(r => r.ToArray()).ToArray();
    }

    /// <summary>
    /// Shortest longest-prompt for which a padded CPU batch is prefilled row by row: short prompts (the suite's
    /// ~20–60-token tasks) are faster as one masked batch — row by row, per-task evaluation took 1.8× as long.
    /// </summary>
    internal int RowByRowMinLength { get; set; } = 256;

    /// <summary>
    /// Whether a padded batch is prefilled one row at a time (<see cref="PrefillRows"/>): on the CPU, where a padded
    /// batch's attention runs under an explicit (B, 1, T, S) mask and materialises every score — composite prompts of
    /// ~840 tokens, 20 rows: 12.3 s for the batch against 0.16 s per row alone on two cores, through SDPA's causal
    /// kernel. Not with a routing recorder (it would see B calls of one row) nor with one-token rows (a one-token
    /// forward counts as a decode step for <see cref="ForcedRouting"/>'s prompt/answer scopes).
    /// </summary>
    private bool PrefillRowByRow(IReadOnlyList<int[]> prompts) =>
        _model.Device.type == DeviceType.CPU && prompts.Max(p => p.Length) >= RowByRowMinLength && prompts.All(p => p.Length > 1)
        && !CountsRows();

    /// <summary>A routing recorder or per-row routing (<see cref="RowRouting"/>) ties data to the batch's rows.</summary>
    private bool CountsRows() => _model.Projections().Any(p => p is MeteoraLinear { Recorder: not null } or MeteoraLinear { RoutesPerRow: true });

    /// <summary>
    /// Prefills every row on its own (no padding, so attention takes the causal kernel) into a cache of its length,
    /// then copies its keys and values into the batch cache's slots [T − len, T) of that row — where the padded
    /// batch's prefill would have put them, at the same positions 0…len−1 — and sets the cache length to T.
    /// Returns the last position's logits (B, V).
    /// </summary>
    internal Tensor PrefillRows(IReadOnlyList<int[]> prompts, int T, KvCache cache)
    {
        RowByRowPrefills++;
        using var scope = NewDisposeScope();
        var device = _model.Device;
        var rows = new List<Tensor>(prompts.Count);
        for (int b = 0; b < prompts.Count; b++)
        {
            int len = prompts[b].Length;
            using var rowCache = new KvCache(_model.Config, 1, len, _model.DType, device);
            var ids = tensor(prompts[b].Select(i => (long)i).ToArray(), [1, len], device: device);   // (1, len)
            var pos = arange(len, ScalarType.Int64, device).unsqueeze(0);                              // (1, len)
            rows.Add(_model.forward(ids, pos, rowCache, lastOnly: true));                              // (1, V)
            for (int l = 0; l < cache.Keys.Length; l++)
            {
                cache.Keys[l].narrow(0, b, 1).narrow(2, T - len, len).copy_(rowCache.Keys[l]);       // (1, Hkv, len, d)
                cache.Values[l].narrow(0, b, 1).narrow(2, T - len, len).copy_(rowCache.Values[l]);
            }
        }
        cache.Length = T;
        return cat(rows, 0).MoveToOuterDisposeScope();                                                 // (B, V)
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
