using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Meteora.Llama;

/// <summary>
/// A LLaMA-family causal language model with Hugging Face parameter names (<c>model.*</c>, <c>lm_head.weight</c>).
/// Every adapted projection is created by a factory, so LoRA and MeteoRA models are this class with other
/// <see cref="Linear"/> subclasses plugged in.
/// </summary>
public sealed class LlamaForCausalLM : nn.Module
{
    public readonly LlamaModel model;
    /// <summary>Output head (vocab, hidden); null when tied to the embeddings.</summary>
    public readonly Parameter? lm_head;
    private readonly RotaryEmbedding _rope;

    public LlamaConfig Config { get; }
    public ScalarType DType { get; }
    public Device Device { get; }

    /// <summary>Allocates an uninitialised model; load weights with <see cref="LlamaLoader"/> or fill them yourself.</summary>
    public LlamaForCausalLM(LlamaConfig config, ScalarType dtype, Device device,
        Func<ProjectionSite, Linear>? makeProjection = null) : base("LlamaForCausalLM")
    {
        Config = config; DType = dtype; Device = device;
        if (device.type == DeviceType.CUDA) AttentionBackends.DisableCuDnnAttention();   // per-length plan builds: see there
        makeProjection ??= site => new Linear(site, dtype, device);
        model = new LlamaModel(config, dtype, device, makeProjection);
        if (!config.TieWordEmbeddings)
            lm_head = ModelParameter.Create(empty(config.VocabSize, config.HiddenSize, dtype, device));
        _rope = new RotaryEmbedding(config, device);
        RegisterComponents();
        eval();   // TorchSharp modules start in training mode; inference is the default here (no dropout)
    }

    /// <summary>Every adapted projection, in layer order then q, k, v, o, gate, up, down.</summary>
    public IEnumerable<Linear> Projections()
    {
        foreach (var layer in model.layers)
        {
            var a = layer.self_attn; var m = layer.mlp;
            yield return a.q_proj; yield return a.k_proj; yield return a.v_proj; yield return a.o_proj;
            yield return m.gate_proj; yield return m.up_proj; yield return m.down_proj;
        }
    }

    /// <summary>The base weights a Hugging Face checkpoint holds, by their checkpoint names.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> BaseWeights()
    {
        yield return ("model.embed_tokens.weight", model.embed_tokens.weight);
        foreach (var (layer, i) in model.layers.Select((l, i) => (l, i)))
        {
            yield return ($"model.layers.{i}.input_layernorm.weight", layer.input_layernorm.weight);
            yield return ($"model.layers.{i}.post_attention_layernorm.weight", layer.post_attention_layernorm.weight);
        }
        foreach (var p in Projections()) yield return ($"{p.Site.Key}.weight", p.weight);
        yield return ("model.norm.weight", model.norm.weight);
        if (lm_head is not null) yield return ("lm_head.weight", lm_head);
    }

    /// <summary>
    /// Fills every base weight with N(0, std²) and the norms with ones, from a seeded generator: synthetic
    /// models for benchmarks and tests, at any size, without a checkpoint.
    /// </summary>
    public void InitializeRandom(long seed, double std = 0.02)
    {
        using var noGrad = no_grad();
        // TorchSharp's Generator objects are CPU generators; on CUDA seed the device's default generator instead.
        using var generator = Device.type == DeviceType.CPU ? new Generator((ulong)seed) : null;
        if (generator is null) cuda.manual_seed(seed);
        foreach (var (name, t) in BaseWeights())
        {
            if (name.EndsWith("norm.weight")) t.fill_(1.0);
            else if (t.dtype == ScalarType.Float32) t.normal_(0, std, generator);
            else
            {
                // Drawn in float32 and rounded, so a bfloat16 model holds the float32 model's weights (normal_ draws
                // another sequence in another dtype): benchmarks that compare dtypes compare one model.
                using var drawn = empty(t.shape, ScalarType.Float32, t.device).normal_(0, std, generator);
                t.copy_(drawn);
            }
        }
    }

    /// <summary>
    /// One forward pass. ids (B, T) at <paramref name="positions"/> (B, T); new tokens go to cache slots
    /// [cache.Length, cache.Length+T) and the cache length advances. Returns logits (B, T, V), or (B, V) for the
    /// last position only when <paramref name="lastOnly"/> (prefill for generation skips the other rows).
    /// </summary>
    public Tensor forward(Tensor ids, Tensor positions, KvCache? cache = null, bool lastOnly = false)
    {
        using var scope = NewDisposeScope();
        int B = (int)ids.shape[0], T = (int)ids.shape[1];
        int start = cache?.Length ?? 0;
        if (cache is not null && start + T > cache.MaxLength)
            throw new MeteoraException($"sequence of {start + T} tokens exceeds the KV cache of {cache.MaxLength}");
        PhaseMarks.Mark("start");
        var (cos, sin) = _rope.Compute(positions, DType);
        var ctx = new AttentionContext
        {
            Cos = cos, Sin = sin, Cache = cache, CacheStart = start,
            Mask = AttentionContext.BuildMask(B, start, T, cache?.KeyValid, ids.device),
        };
        PhaseMarks.Mark("rotary tables, mask");
        var h = model.forward(ids, ctx);                                  // (B, T, hidden)
        if (cache is not null) cache.Length = start + T;
        if (lastOnly) h = h.select(1, T - 1);                             // (B, hidden)
        var logits = DecodeGemv.Project(h, lm_head ?? model.embed_tokens.weight);  // (B, [T,] V)
        PhaseMarks.Mark("LM head");
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One decode step whose cache slot is a device tensor: ids (B, 1) at <paramref name="positions"/> (B, 1) go to
    /// slot <paramref name="slot"/> (1,) int64, and attention reads the whole cache masked to slots ≤ slot (and to
    /// real tokens when the batch was padded). Shapes and addresses do not depend on the step, so the call can be
    /// captured into a CUDA graph and replayed (<see cref="Generation.StaticDecoder"/>). Does not move
    /// <see cref="KvCache.Length"/>. Returns logits (B, V).
    /// </summary>
    public Tensor ForwardAtSlot(Tensor ids, Tensor positions, KvCache cache, Tensor slot)
    {
        using var scope = NewDisposeScope();
        int B = (int)ids.shape[0];
        PhaseMarks.Mark("start");
        var (cos, sin) = _rope.Compute(positions, DType);
        var keySlots = arange(cache.MaxLength, ScalarType.Int64, ids.device);            // (S,)
        var allowed = keySlots.le(slot).view(1, 1, 1, cache.MaxLength);                   // (1, 1, 1, S)
        if (cache.KeyValid is { } valid) allowed = allowed.logical_and(valid.view(B, 1, 1, cache.MaxLength));
        var ctx = new AttentionContext
        {
            Cos = cos, Sin = sin, Cache = cache, CacheSlots = slot,
            Mask = allowed.expand(B, 1, 1, cache.MaxLength),                               // (B, 1, 1, S)
        };
        PhaseMarks.Mark("rotary tables, mask");
        var h = model.forward(ids, ctx).select(1, 0);                                     // (B, hidden)
        var logits = DecodeGemv.Project(h, lm_head ?? model.embed_tokens.weight);     // (B, V)
        PhaseMarks.Mark("LM head");
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One decode step with rows at different lengths (continuous batching): row b's token ids[b] (B, 1) sits at
    /// position positions[b] (B, 1), which is also its cache slot (each row's sequence starts at slot 0), and
    /// attends to its slots [0, position]. Attention reads <paramref name="keyLength"/> slots (≥ the largest
    /// position + 1; the cache's length when the step is to be captured once for every length). Does not move
    /// <see cref="KvCache.Length"/>. Returns logits (B, V).
    /// </summary>
    public Tensor ForwardRows(Tensor ids, Tensor positions, KvCache cache, int keyLength)
    {
        using var scope = NewDisposeScope();
        int B = (int)ids.shape[0];
        if (keyLength < 1 || keyLength > cache.MaxLength)
            throw new MeteoraException($"decode step reads {keyLength} key slots but the KV cache holds {cache.MaxLength}");
        PhaseMarks.Mark("start");
        var (cos, sin) = _rope.Compute(positions, DType);
        var keySlots = arange(keyLength, ScalarType.Int64, ids.device).view(1, 1, 1, keyLength);   // (1, 1, 1, S)
        var ctx = new AttentionContext
        {
            Cos = cos, Sin = sin, Cache = cache, RowSlots = positions.view(B), KeyLength = keyLength,
            Mask = keySlots.le(positions.view(B, 1, 1, 1)),                                  // (B, 1, 1, S)
        };
        PhaseMarks.Mark("rotary tables, mask");
        var h = model.forward(ids, ctx).select(1, 0);                                     // (B, hidden)
        var logits = DecodeGemv.Project(h, lm_head ?? model.embed_tokens.weight);     // (B, V)
        PhaseMarks.Mark("LM head");
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>Forward without a cache over unpadded rows; positions 0…T-1. Returns logits (B, T, V).</summary>
    public Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var positions = arange(ids.shape[1], ScalarType.Int64, ids.device).unsqueeze(0).expand(ids.shape[0], -1);
        return forward(ids, positions).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _rope.Dispose();
        base.Dispose(disposing);
    }
}
