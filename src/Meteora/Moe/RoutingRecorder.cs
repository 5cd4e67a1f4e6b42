using static TorchSharp.torch;

namespace Meteora.Moe;

/// <summary>
/// Collects what the MeteoRA projections decide during a forward: the chosen adapter indices per token (the
/// routing trace) and, for the gate loss, the float32 gate logits (kept in the autograd graph).
/// </summary>
public sealed class RoutingRecorder : IDisposable
{
    private readonly List<(string Key, Tensor Indices)> _indices = new();
    private readonly List<(string Key, Tensor Logits)> _logits = new();

    public bool RecordIndices { get; init; }
    public bool RecordLogits { get; init; }

    internal void Add(string key, Tensor logits, Tensor indices)
    {
        if (RecordIndices) _indices.Add((key, indices.detach().cpu().DetachFromDisposeScope()));
        if (RecordLogits) _logits.Add((key, logits.DetachFromDisposeScope()));
    }

    /// <summary>Per projection key, the (tokens, k) indices of every forward, concatenated over calls.</summary>
    public IReadOnlyDictionary<string, long[][]> Trace()
    {
        var result = new Dictionary<string, long[][]>();
        foreach (var group in _indices.GroupBy(p => p.Key))
            result[group.Key] = group.SelectMany(p =>
            {
                var t = p.Indices;
                long k = t.shape[^1];
                var flat = t.reshape(-1, k).data<long>().ToArray();
                return Enumerable.Range(0, flat.Length / (int)k).Select(i => flat.Skip(i * (int)k).Take((int)k).ToArray());
            }).ToArray();
        return result;
    }

    /// <summary>Gate logits per projection, in forward order: (…, L) float32 each.</summary>
    public IReadOnlyList<(string Key, Tensor Logits)> Logits => _logits;

    public void Clear()
    {
        foreach (var (_, t) in _indices) t.Dispose();
        foreach (var (_, t) in _logits) t.Dispose();
        _indices.Clear();
        _logits.Clear();
    }

    public void Dispose() => Clear();
}
