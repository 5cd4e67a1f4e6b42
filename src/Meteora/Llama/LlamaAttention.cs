using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Llama;

/// <summary>
/// Multi-head attention with grouped-query KV heads, rotary embeddings and the static KV cache, computed with
/// <c>scaled_dot_product_attention</c>. Grouped heads are never copied for decoding: the rep query heads that
/// share a KV head are folded into the query length, so SDPA reads each cached key once.
/// </summary>
public sealed class LlamaAttention : nn.Module
{
    public readonly Linear q_proj, k_proj, v_proj, o_proj;
    private readonly int _heads, _kvHeads, _headDim;

    public LlamaAttention(LlamaConfig c, int layer, Func<ProjectionSite, Linear> makeProjection) : base("self_attn")
    {
        _heads = c.NumAttentionHeads; _kvHeads = c.NumKeyValueHeads; _headDim = c.HeadDim;
        int qOut = _heads * _headDim, kvOut = _kvHeads * _headDim;
        q_proj = makeProjection(new ProjectionSite(layer, "self_attn", "q_proj", c.HiddenSize, qOut));
        k_proj = makeProjection(new ProjectionSite(layer, "self_attn", "k_proj", c.HiddenSize, kvOut));
        v_proj = makeProjection(new ProjectionSite(layer, "self_attn", "v_proj", c.HiddenSize, kvOut));
        o_proj = makeProjection(new ProjectionSite(layer, "self_attn", "o_proj", qOut, c.HiddenSize));
        RegisterComponents();
    }

    /// <summary>x (B, T, hidden) → (B, T, hidden).</summary>
    internal Tensor forward(Tensor x, AttentionContext ctx, int layer)
    {
        using var scope = NewDisposeScope();
        long B = x.shape[0], T = x.shape[1];
        var q = q_proj.forward(x).view(B, T, _heads, _headDim);          // (B, T, H, d)
        var k = k_proj.forward(x).view(B, T, _kvHeads, _headDim);        // (B, T, Hkv, d)
        var v = v_proj.forward(x).view(B, T, _kvHeads, _headDim);
        PhaseMarks.Mark("q/k/v projections");
        (q, k) = FusedKernels.Rotary(q, k, ctx.Cos, ctx.Sin) ?? (RotaryEmbedding.Apply(q, ctx.Cos, ctx.Sin), RotaryEmbedding.Apply(k, ctx.Cos, ctx.Sin));
        k = k.transpose(1, 2);                                            // (B, Hkv, T, d)
        v = v.transpose(1, 2);
        PhaseMarks.Mark("rotary");

        if (ctx is { Cache: { } rowCache, RowSlots: { } rowSlots })
        {
            var index = rowSlots.view(B, 1, 1, 1).expand(B, _kvHeads, 1, _headDim);     // (B, Hkv, 1, d): row b → its slot
            rowCache.Keys[layer].scatter_(2, index, k);
            rowCache.Values[layer].scatter_(2, index, v);
            k = rowCache.Keys[layer].narrow(2, 0, ctx.KeyLength);                        // (B, Hkv, S, d), masked per row
            v = rowCache.Values[layer].narrow(2, 0, ctx.KeyLength);
        }
        else if (ctx is { Cache: { } slotted, CacheSlots: { } slots })
        {
            slotted.Keys[layer].index_copy_(2, slots, k);                   // slots from the device, not the host
            slotted.Values[layer].index_copy_(2, slots, v);
            k = slotted.Keys[layer];                                        // (B, Hkv, MaxLength, d), masked
            v = slotted.Values[layer];
        }
        else if (ctx.Cache is { } cache)
        {
            int total = ctx.CacheStart + (int)T;
            cache.Keys[layer].narrow(2, ctx.CacheStart, T).copy_(k);
            cache.Values[layer].narrow(2, ctx.CacheStart, T).copy_(v);
            k = cache.Keys[layer].narrow(2, 0, total);                    // (B, Hkv, S, d)
            v = cache.Values[layer].narrow(2, 0, total);
        }

        PhaseMarks.Mark("KV cache write");
        Tensor attn;   // (B, T, H·d)
        int rep = _heads / _kvHeads;
        if (ctx.Mask is null && T > 1)
        {
            // Causal prefill from slot 0 without padding: expand KV heads and let SDPA use its causal kernel.
            var kx = rep == 1 ? k : k.repeat_interleave(rep, 1);             // (B, H, S, d)
            var vx = rep == 1 ? v : v.repeat_interleave(rep, 1);
            var o = nn.functional.scaled_dot_product_attention(q.transpose(1, 2), kx, vx, is_casual: true); // (B, H, T, d)
            attn = o.transpose(1, 2).reshape(B, T, _heads * _headDim);
        }
        else
        {
            // Fold the rep query heads of each KV head into the query axis: (B, Hkv, rep·T, d).
            var qg = q.view(B, T, _kvHeads, rep, _headDim).permute(0, 2, 3, 1, 4).reshape(B, _kvHeads, rep * T, _headDim);
            Tensor? mask = ctx.Mask;
            if (mask is not null && rep > 1 && T > 1)
                mask = mask.unsqueeze(2).expand(B, 1, rep, T, mask.shape[^1]).reshape(B, 1, rep * T, mask.shape[^1]);
            var o = nn.functional.scaled_dot_product_attention(qg, k, v, mask);       // (B, Hkv, rep·T, d)
            attn = o.view(B, _kvHeads, rep, T, _headDim).permute(0, 3, 1, 2, 4).reshape(B, T, _heads * _headDim);
        }
        PhaseMarks.Mark("attention");
        var y = o_proj.forward(attn);
        PhaseMarks.Mark("o projection");
        return y.MoveToOuterDisposeScope();
    }
}
