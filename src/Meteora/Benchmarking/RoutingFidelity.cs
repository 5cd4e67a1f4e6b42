using Meteora.Moe;
using static TorchSharp.torch;

namespace Meteora.Benchmarking;

/// <summary>One way of running the low-precision model, against the same model in float32.</summary>
/// <param name="Variant">how the low-precision model ranked and routed</param>
/// <param name="Decisions">(projection, token) routing decisions compared; null where they cannot be recorded (the routing kernel)</param>
/// <param name="Agreeing">of those, the ones whose top-k set equals the float32 model's</param>
/// <param name="MaxLogitDifference">largest |output logit − the float32 model's|</param>
/// <param name="MaxDifferenceFromAten">largest |output logit − the recorded exact-ranking run's| (the kernel against the ATen path)</param>
/// <param name="Reranked">decisions whose top-k set exact ranking changed (the float32 gate, on the model's own input, disagreed with the low-precision logits)</param>
/// <param name="NearTies">decisions whose low-precision logits were within twice their error bound of a tie (where they
/// alone might not rank as the float32 gate: <see cref="ExactRanking.NearTies"/>)</param>
/// <param name="SameInputAgreeing">decisions whose top-k set is the float32 gate's top-k of the same input (of <paramref name="Decisions"/>):
/// all of them is what exact ranking guarantees</param>
public sealed record RoutingFidelityRow(string Variant, long? Decisions, long? Agreeing, double MaxLogitDifference, double? MaxDifferenceFromAten = null,
    long? Reranked = null, long? NearTies = null, long? SameInputAgreeing = null);

/// <summary>
/// <c>bench routing</c>: how often a bfloat16/float16 MeteoRA model sends each token of each projection to the same
/// top-k adapters as the same weights in float32, end to end (each model on its own activations, so a near-tie can
/// still go either way), with <see cref="ExactRanking"/> off and on; and how far the fused routing kernel's output is
/// from the ATen path's (a recorder needs the indices, so recorded runs take the ATen path; the unrecorded run takes
/// the kernel on CUDA in bfloat16 — equal top-k sets give logits equal up to the weights' rounding).
/// </summary>
public static class RoutingFidelity
{
    /// <param name="build">makes the model in the given dtype (called twice: float32, then <paramref name="dtype"/>)</param>
    /// <param name="ids">(B, T) token ids</param>
    public static List<RoutingFidelityRow> Measure(Func<ScalarType, MeteoraModel> build, Tensor ids, int topK, ScalarType dtype)
    {
        using var noGrad = no_grad();
        var rows = new List<RoutingFidelityRow>();
        IReadOnlyDictionary<string, long[][]> reference;
        Tensor referenceLogits;
        using (var full = build(ScalarType.Float32))
        {
            full.Configure(topK: topK);
            (reference, referenceLogits, _, _) = Recorded(full, ids);
        }
        bool saved = ExactRanking.Enabled;
        try
        {
            using var low = build(dtype);
            low.Configure(topK: topK);
            Tensor? exactLogits = null;
            IReadOnlyDictionary<string, long[][]>? fusedTrace = null;
            foreach (bool exact in new[] { false, true })
            {
                ExactRanking.Enabled = exact;
                var (trace, logits, nearTies, sameInput) = Recorded(low, ids);
                var (decisions, agreeing) = Agreement(reference, trace);
                if (!exact)
                {
                    rows.Add(new("fused logits alone, recorded (ATen)", decisions, agreeing, MaxDifference(logits, referenceLogits), SameInputAgreeing: sameInput));
                    fusedTrace = trace;
                    continue;
                }
                // Only the ranking differs between the two runs up to the first re-ranked decision; after it the
                // activations differ too, so this counts what exact ranking changed, directly and downstream.
                var (_, unchanged) = Agreement(fusedTrace!, trace);
                rows.Add(new("exact ranking, recorded (ATen)", decisions, agreeing, MaxDifference(logits, referenceLogits), Reranked: decisions - unchanged, NearTies: nearTies, SameInputAgreeing: sameInput));
                exactLogits = logits;
            }
            // Unrecorded: the fast path (the routing kernel on CUDA in bfloat16), exact ranking on.
            using var unrecorded = low.Forward(ids).to(ScalarType.Float32).cpu();
            rows.Add(new("exact ranking, unrecorded (kernel on CUDA)", null, null,
                MaxDifference(unrecorded, referenceLogits), MaxDifference(unrecorded, exactLogits!)));
        }
        finally
        {
            ExactRanking.Enabled = saved;
        }
        return rows;
    }

    private static (IReadOnlyDictionary<string, long[][]> Trace, Tensor Logits, long NearTies, long SameInput) Recorded(MeteoraModel m, Tensor ids)
    {
        using var recorder = new RoutingRecorder { RecordIndices = true, RecordNearTies = true, RecordGateAgreement = true };
        m.Attach(recorder);
        try
        {
            var logits = m.Forward(ids).to(ScalarType.Float32).cpu();                       // (B, T, V)
            return (recorder.Trace(), logits, recorder.NearTies.Values.Sum(), recorder.GateAgreement.Values.Sum(a => a.Agreeing));
        }
        finally
        {
            m.Attach(null);
        }
    }

    /// <summary>(projection, token) decisions in both traces, and how many have the same top-k set.</summary>
    public static (long Decisions, long Agreeing) Agreement(IReadOnlyDictionary<string, long[][]> reference, IReadOnlyDictionary<string, long[][]> other)
    {
        long decisions = 0, agreeing = 0;
        foreach (var (key, rows) in reference)
        {
            if (!other.TryGetValue(key, out var theirs) || theirs.Length != rows.Length)
                throw new MeteoraException($"routing traces differ in shape at {key}");
            for (int t = 0; t < rows.Length; t++)
            {
                decisions++;
                if (rows[t].ToHashSet().SetEquals(theirs[t])) agreeing++;
            }
        }
        return (decisions, agreeing);
    }

    private static double MaxDifference(Tensor a, Tensor b)
    {
        using var d = (a - b).abs().max();
        return d.item<float>();
    }
}
