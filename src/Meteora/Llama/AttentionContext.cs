using static TorchSharp.torch;

namespace Meteora.Llama;

/// <summary>
/// What every layer's attention needs for one forward call: rotary cos/sin for the tokens' positions, the
/// boolean attention mask (null when plain causal attention over unpadded rows is exact), and where the new
/// tokens go in the KV cache.
/// </summary>
internal sealed class AttentionContext
{
    /// <summary>(B, T, 1, head_dim) in the model dtype.</summary>
    public required Tensor Cos { get; init; }
    public required Tensor Sin { get; init; }
    /// <summary>(B, 1, T, S) bool, true = may attend; null = causal without padding.</summary>
    public Tensor? Mask { get; init; }
    public KvCache? Cache { get; init; }
    /// <summary>Cache slot of the first new token (0 without a cache).</summary>
    public int CacheStart { get; init; }
    /// <summary>
    /// (T,) int64 on the device: the cache slots of the new tokens, when they live on the device rather than in
    /// <see cref="CacheStart"/> (a decode step replayed from a CUDA graph). Attention then reads the whole cache
    /// under <see cref="Mask"/>, (B, 1, T, MaxLength), so every shape and address is the same at every step.
    /// </summary>
    public Tensor? CacheSlots { get; init; }
    /// <summary>
    /// (B,) int64 on the device: each row's own cache slot for its one new token (continuous batching, where
    /// rows are at different lengths). Attention then reads slots [0, <see cref="KeyLength"/>) under
    /// <see cref="Mask"/>.
    /// </summary>
    public Tensor? RowSlots { get; init; }
    /// <summary>Key slots attention reads with <see cref="RowSlots"/>: at least the longest row's length.</summary>
    public int KeyLength { get; init; }

    /// <summary>
    /// Builds the mask for T new queries at cache slots [start, start+T) over keys [0, S = start+T):
    /// causal ∧ key is real, plus each query's own slot so that padding rows never see an empty row (which would
    /// make NaNs that leak into later layers' keys). Null when no row is padded and no offset needs it.
    /// </summary>
    public static Tensor? BuildMask(int batch, int start, int newTokens, Tensor? keyValid, Device device)
    {
        if (keyValid is null && (newTokens == 1 || start == 0)) return null;
        using var scope = NewDisposeScope();
        int total = start + newTokens;
        var q = arange(start, total, ScalarType.Int64, device).unsqueeze(1);     // (T, 1) absolute query slots
        var k = arange(0, total, ScalarType.Int64, device).unsqueeze(0);         // (1, S)
        var allowed = (k <= q).unsqueeze(0).unsqueeze(0);                        // (1, 1, T, S)
        if (keyValid is not null)
        {
            var valid = keyValid.narrow(1, 0, total).unsqueeze(1).unsqueeze(1);  // (B, 1, 1, S)
            allowed = allowed.logical_and(valid).logical_or((k == q).unsqueeze(0).unsqueeze(0));
        }
        return allowed.expand(batch, 1, newTokens, total).contiguous().MoveToOuterDisposeScope();
    }
}
