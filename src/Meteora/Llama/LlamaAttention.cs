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
    private readonly Tensor? _qkv;     // (H·d + 2·Hkv·d, hidden): [Wq; Wk; Wv], whose row blocks are the three plain weights
    private readonly Tensor? _qkvT;    // its transpose (view), the fused GEMM's right operand

    public LlamaAttention(LlamaConfig c, int layer, Func<ProjectionSite, Linear> makeProjection) : base("self_attn")
    {
        _heads = c.NumAttentionHeads; _kvHeads = c.NumKeyValueHeads; _headDim = c.HeadDim;
        int qOut = _heads * _headDim, kvOut = _kvHeads * _headDim;
        var qSite = new ProjectionSite(layer, "self_attn", "q_proj", c.HiddenSize, qOut);
        var kSite = new ProjectionSite(layer, "self_attn", "k_proj", c.HiddenSize, kvOut);
        var vSite = new ProjectionSite(layer, "self_attn", "v_proj", c.HiddenSize, kvOut);
        q_proj = makeProjection(qSite);
        k_proj = makeProjection(kSite);
        v_proj = makeProjection(vSite);
        if (q_proj.GetType() == typeof(Linear) && k_proj.GetType() == typeof(Linear) && v_proj.GetType() == typeof(Linear))
        {
            // Plain projections (a base model): their weights become row blocks of one buffer, so inference on CUDA
            // reads all three in one GEMM (issue #17: three narrow GEMMs ran at a third of the bandwidth at decode).
            // Names, shapes and loading are unchanged: the loader fills each weight in place.
            var w = q_proj.weight;
            _qkv = empty(qOut + 2 * kvOut, c.HiddenSize, w.dtype, w.device).DetachFromDisposeScope();
            q_proj.Dispose(); k_proj.Dispose(); v_proj.Dispose();
            q_proj = Linear.OnView(qSite, _qkv.narrow(0, 0, qOut));
            k_proj = Linear.OnView(kSite, _qkv.narrow(0, qOut, kvOut));
            v_proj = Linear.OnView(vSite, _qkv.narrow(0, qOut + kvOut, kvOut));
            _qkvT = _qkv.t().DetachFromDisposeScope();
        }
        o_proj = makeProjection(new ProjectionSite(layer, "self_attn", "o_proj", qOut, c.HiddenSize));
        RegisterComponents();
    }

    /// <summary>Whether this layer's q, k and v weights share one buffer (plain projections), so CUDA inference can fuse them.</summary>
    internal bool SharesQkvBuffer => _qkvT is not null;

    /// <summary>Whether CUDA inference runs q, k and v as one GEMM where it can (default true; <c>METEORA_FUSED_QKV=off</c> to compare).</summary>
    internal static bool FusedQkv { get; set; } = Environment.GetEnvironmentVariable("METEORA_FUSED_QKV") is not ("off" or "0" or "false");

    /// <summary>
    /// q, k, v (B, T, ·) of x: one GEMM over [Wq; Wk; Wv] (column slices of its output) for inference on CUDA with plain
    /// projections; otherwise the three projections (CPU, where results stay bit for bit as they were; training, where
    /// gradients must reach each weight; LoRA and MeteoRA projections, which MeteoRA may run together: <see cref="Linear.TryForwardGroup"/>).
    /// </summary>
    private (Tensor Q, Tensor K, Tensor V) Project(Tensor x)
    {
        if (_qkvT is not null && FusedQkv && x.device_type == DeviceType.CUDA && x.dtype == _qkvT.dtype && x.device_index == _qkvT.device_index
            && !(is_grad_enabled() && (q_proj.weight.requires_grad || k_proj.weight.requires_grad || v_proj.weight.requires_grad || x.requires_grad)))
        {
            int qOut = _heads * _headDim, kvOut = _kvHeads * _headDim;
            var all = DecodeGemv.Project(x, _qkvT.t());                                       // (B, T, H·d + 2·Hkv·d)
            return (all.narrow(-1, 0, qOut), all.narrow(-1, qOut, kvOut), all.narrow(-1, qOut + kvOut, kvOut));
        }
        if (q_proj.TryForwardGroup([q_proj, k_proj, v_proj], x) is [var q, var k, var v])
            return (q, k, v);                                                                 // in one launch (one token at decode)
        return (q_proj.forward(x), k_proj.forward(x), v_proj.forward(x));
    }

    /// <summary>x (B, T, hidden) → (B, T, hidden).</summary>
    internal Tensor forward(Tensor x, AttentionContext ctx, int layer)
    {
        using var scope = NewDisposeScope();
        long B = x.shape[0], T = x.shape[1];
        var (qp, kp, vp) = Project(x);
        var q = qp.view(B, T, _heads, _headDim);                          // (B, T, H, d)
        var k = kp.view(B, T, _kvHeads, _headDim);                        // (B, T, Hkv, d)
        var v = vp.view(B, T, _kvHeads, _headDim);
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
        else if (T == 1 && DecodeAttention.Apply(q, k, v, ctx.Mask) is { } decoded)
            attn = decoded;                                                 // (B, 1, H·d): bfloat16 on CUDA, filled slots only
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

    protected override void Dispose(bool disposing)
    {
        if (disposing) { _qkvT?.Dispose(); _qkv?.Dispose(); }
        base.Dispose(disposing);
    }
}
