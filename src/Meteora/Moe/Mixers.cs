using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Moe;

/// <summary>
/// The four ways to compute <c>Σ_j w_j · B_{e_j} (A_{e_j} x)</c> for routed tokens. x (N, in), indices (N, k),
/// weights (N, k) float32 → delta (N, out) in x's dtype. All give the same numbers up to rounding.
/// </summary>
internal static class Mixers
{

    public static Tensor Mix(MixingStrategy strategy, AdapterStack s, Tensor x, Tensor indices, Tensor weights) => strategy switch
    {
        MixingStrategy.Loop => Loop(s, x, indices, weights),
        MixingStrategy.Gather => Gather(s, x, indices, weights),
        MixingStrategy.Dense => Dense(s, x, indices, weights),
        MixingStrategy.Segment => Segment(s, x, indices, weights),
        MixingStrategy.Auto => Dense(s, x, indices, weights),
        _ => throw new ArgumentOutOfRangeException(nameof(strategy)),
    };

    /// <summary>Dense: z = x A_allᵀ (N, ΣR), scaled by each token's weight for the owning adapter, then z B_allᵀ.</summary>
    public static Tensor Dense(AdapterStack s, Tensor x, Tensor indices, Tensor weights)
    {
        using var scope = NewDisposeScope();
        long N = x.shape[0];
        if (s.TotalRank == 0) return zeros(N, s.B.shape[0], x.dtype, x.device).MoveToOuterDisposeScope();
        var route = zeros(N, s.Count, weights.dtype, x.device).scatter_(1, indices, weights);   // (N, L), 0 = unrouted
        var perRank = route.index_select(1, s.Owner).to(x.dtype);                                // (N, ΣR)
        var z = x.matmul(s.A.t()) * perRank;                                                      // (N, ΣR)
        return z.matmul(s.B.t()).MoveToOuterDisposeScope();                                       // (N, out)
    }

    /// <summary>Loop: one pass per adapter over the tokens routed to it.</summary>
    public static Tensor Loop(AdapterStack s, Tensor x, Tensor indices, Tensor weights)
    {
        using var scope = NewDisposeScope();
        var y = zeros(x.shape[0], s.B.shape[0], x.dtype, x.device);
        for (int e = 0; e < s.Count; e++)
        {
            if (s.Ranks[e] == 0) continue;
            var w = (weights * (indices == e)).sum(-1);                                 // (N,) weight of adapter e
            var rows = (indices == e).any(-1).nonzero().squeeze(-1);                    // routed tokens (host sync)
            if (rows.shape[0] == 0) continue;
            var h = x.index_select(0, rows).matmul(s.AOf(e).t());                        // (n, r_e)
            var d = h.matmul(s.BOf(e).t()) * w.index_select(0, rows).unsqueeze(-1).to(x.dtype);   // (n, out)
            y.index_add_(0, rows, d, HeldScalars.One);
        }
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>Gather (bmm): each token-slot's padded A and B gathered, two batched matmuls.</summary>
    public static Tensor Gather(AdapterStack s, Tensor x, Tensor indices, Tensor weights)
    {
        using var scope = NewDisposeScope();
        long N = x.shape[0], k = indices.shape[1];
        var (aPad, bPad) = s.Padded();                                                   // (L, r, in), (L, out, r)
        var flat = indices.reshape(-1);                                                  // (N·k,)
        var a = aPad.index_select(0, flat);                                              // (N·k, r, in)
        var b = bPad.index_select(0, flat);                                              // (N·k, out, r)
        var xs = x.unsqueeze(1).expand(N, k, x.shape[1]).reshape(N * k, 1, x.shape[1]);  // (N·k, 1, in)
        var z = xs.bmm(a.transpose(1, 2));                                               // (N·k, 1, r)
        var d = z.bmm(b.transpose(1, 2)).view(N, k, -1);                                 // (N, k, out)
        return (d * weights.unsqueeze(-1).to(x.dtype)).sum(1).MoveToOuterDisposeScope();
    }

    /// <summary>Segment: token-slots sorted by adapter; one GEMM pair per active adapter on contiguous rows.</summary>
    public static Tensor Segment(AdapterStack s, Tensor x, Tensor indices, Tensor weights)
    {
        using var scope = NewDisposeScope();
        long k = indices.shape[1];
        var y = zeros(x.shape[0], s.B.shape[0], x.dtype, x.device);
        var flat = indices.reshape(-1);                                                  // (N·k,)
        var (sorted, order) = flat.sort();
        var counts = flat.bincount(null, s.Count).cpu().data<long>().ToArray();     // host sync: segment sizes
        var tokens = order.div(k, rounding_mode: RoundingMode.floor);                    // slot → token
        var slotWeights = weights.reshape(-1).index_select(0, order).to(x.dtype);        // (N·k,) in sorted order
        long start = 0;
        for (int e = 0; e < s.Count; e++)
        {
            long n = counts[e];
            if (n > 0 && s.Ranks[e] > 0)
            {
                var rows = tokens.narrow(0, start, n);
                var h = x.index_select(0, rows).matmul(s.AOf(e).t());                    // (n, r_e)
                var d = h.matmul(s.BOf(e).t()) * slotWeights.narrow(0, start, n).unsqueeze(-1);
                y.index_add_(0, rows, d, HeldScalars.One);
            }
            start += n;
        }
        return y.MoveToOuterDisposeScope();
    }
}
