using static TorchSharp.torch;

namespace Meteora.Llama;

/// <summary>
/// Static, pre-allocated key/value cache (gpt-fast style): per layer <c>(B, n_kv, MaxLength, head_dim)</c>
/// tensors written in place, so decoding allocates nothing per step. <see cref="Length"/> positions are filled;
/// <see cref="KeyValid"/> marks left-padding slots as invalid when the batch was padded.
/// </summary>
public sealed class KvCache : IDisposable
{
    public Tensor[] Keys { get; }
    public Tensor[] Values { get; }
    /// <summary>(B, MaxLength) bool, true where a slot holds a real token; null when no row is padded.</summary>
    public Tensor? KeyValid { get; private set; }
    public int BatchSize { get; }
    public int MaxLength { get; }
    /// <summary>Slots [0, Length) are filled, for every row.</summary>
    public int Length { get; set; }

    public KvCache(LlamaConfig config, int batchSize, int maxLength, ScalarType dtype, Device device)
    {
        BatchSize = batchSize;
        MaxLength = maxLength;
        Keys = new Tensor[config.NumHiddenLayers];
        Values = new Tensor[config.NumHiddenLayers];
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            Keys[i] = zeros(batchSize, config.NumKeyValueHeads, maxLength, config.HeadDim, dtype, device).DetachFromDisposeScope();
            Values[i] = zeros(batchSize, config.NumKeyValueHeads, maxLength, config.HeadDim, dtype, device).DetachFromDisposeScope();
        }
    }

    private KvCache(Tensor[] keys, Tensor[] values, int batchSize, int maxLength)
    {
        Keys = keys; Values = values; BatchSize = batchSize; MaxLength = maxLength;
    }

    /// <summary>
    /// A cache over rows [<paramref name="start"/>, start + <paramref name="count"/>) of this one: views of the same
    /// memory, so what a forward writes through it lands here (serving gives every request its own row). Starts
    /// at <see cref="Length"/> 0 and without padding; dispose it when done (the memory stays with this cache).
    /// </summary>
    public KvCache Rows(int start, int count)
    {
        if (start < 0 || count < 1 || start + count > BatchSize)
            throw new MeteoraException($"KV cache rows {start}…{start + count - 1} outside the cache's {BatchSize} rows");
        return new KvCache(Keys.Select(k => k.narrow(0, start, count).DetachFromDisposeScope()).ToArray(),
            Values.Select(v => v.narrow(0, start, count).DetachFromDisposeScope()).ToArray(), count, MaxLength);
    }

    /// <summary>
    /// A new cache holding only the rows <paramref name="keep"/> (int64 indices into this cache's rows, in the order
    /// given), with the same <see cref="Length"/> and padding: generation drops rows that have finished, so later
    /// steps do no work for them. Copies the kept rows; this cache is left as it was (dispose it when done).
    /// </summary>
    public KvCache SelectRows(Tensor keep)
    {
        int count = (int)keep.shape[0];
        if (count < 1) throw new MeteoraException("KV cache: selecting no rows");
        var kept = new KvCache(Keys.Select(k => k.index_select(0, keep).DetachFromDisposeScope()).ToArray(),   // (B', n_kv, S, d)
            Values.Select(v => v.index_select(0, keep).DetachFromDisposeScope()).ToArray(), count, MaxLength) { Length = Length };
        if (KeyValid is { } valid) kept.KeyValid = valid.index_select(0, keep).DetachFromDisposeScope();       // (B', S)
        return kept;
    }

    /// <summary>Records which of the first slots are padding: <paramref name="attentionMask"/> (B, T) of 0/1.</summary>
    public void SetPadding(Tensor attentionMask)
    {
        KeyValid?.Dispose();
        var valid = ones(BatchSize, MaxLength, ScalarType.Bool, attentionMask.device);
        valid.narrow(1, 0, attentionMask.shape[1]).copy_(attentionMask.to(ScalarType.Bool));
        KeyValid = valid.DetachFromDisposeScope();   // owned by the cache, not by the caller's scope
    }

    public void Dispose()
    {
        foreach (var t in Keys) t.Dispose();
        foreach (var t in Values) t.Dispose();
        KeyValid?.Dispose();
    }
}
