using static TorchSharp.torch;

namespace Meteora.Moe;

/// <summary>
/// Collects what the MeteoRA projections decide during a forward: the chosen adapter indices per token (the
/// routing trace), their routing weights, and, for the gate loss, the float32 gate logits (kept in the autograd graph).
/// </summary>
public sealed class RoutingRecorder : IDisposable
{
    private readonly List<(string Key, Tensor Indices)> _indices = new();
    private readonly List<(string Key, Tensor Weights)> _weights = new();
    private readonly List<(string Key, Tensor Logits)> _logits = new();

    public bool RecordIndices { get; init; }
    /// <summary>Also keep the routing weights that go with the indices (float32, same order).</summary>
    public bool RecordWeights { get; init; }
    public bool RecordLogits { get; init; }
    /// <summary>
    /// Also count, per projection, the tokens a low-precision model ranked with the float32 gate because their k-th
    /// and (k+1)-th logits were near a tie (<see cref="ExactRanking"/>; ATen path only, as every recorded forward is).
    /// </summary>
    public bool RecordNearTies { get; init; }

    private readonly Dictionary<string, long> _nearTies = new();

    /// <summary>Also keep each projection's input x (tokens, in) as float32 on the CPU: what its gate reads (diagnostics).</summary>
    public bool RecordInputs { get; init; }

    private readonly List<(string Key, Tensor Input)> _inputs = new();

    internal void AddInput(string key, Tensor x2) =>
        _inputs.Add((key, x2.detach().to(ScalarType.Float32).cpu().DetachFromDisposeScope()));

    /// <summary>Per projection key, its inputs (tokens, in) float32 over every recorded forward, in call order (needs <see cref="RecordInputs"/>).</summary>
    public IReadOnlyDictionary<string, Tensor> Inputs() =>
        _inputs.GroupBy(p => p.Key).ToDictionary(g => g.Key, g => g.Count() == 1 ? g.First().Input : cat(g.Select(p => p.Input).ToList(), 0));

    /// <summary>
    /// Also compare, per projection, a low-precision model's top-k sets with the float32 gate's top-k of the same input
    /// (call-wide top-k routing through the gates; the check behind <see cref="ExactRanking"/>'s guarantee).
    /// </summary>
    public bool RecordGateAgreement { get; init; }

    private readonly Dictionary<string, (long Decisions, long Agreeing)> _gateAgreement = new();

    /// <summary>Per projection key, decisions and how many picked the float32 gate's top-k set (needs <see cref="RecordGateAgreement"/>).</summary>
    public IReadOnlyDictionary<string, (long Decisions, long Agreeing)> GateAgreement => _gateAgreement;

    internal void AddGateAgreement(string key, Tensor indices, Tensor float32Logits)
    {
        using var scope = NewDisposeScope();
        int k = (int)indices.shape[^1];
        var picked = indices.reshape(-1, k).sort(-1).Values;                                 // (N, k) ascending
        var wanted = float32Logits.topk(k, -1).indexes.sort(-1).Values;                    // (N, k)
        using var same = picked.eq(wanted).all(-1).sum();
        var (d, a) = _gateAgreement.GetValueOrDefault(key);
        _gateAgreement[key] = (d + picked.shape[0], a + same.item<long>());
    }

    /// <summary>Per projection key, the tokens ranked with the float32 gate (needs <see cref="RecordNearTies"/>).</summary>
    public IReadOnlyDictionary<string, long> NearTies => _nearTies;

    internal void AddNearTies(string key, Tensor near)
    {
        if (!RecordNearTies) return;
        using var count = near.sum();
        _nearTies[key] = _nearTies.GetValueOrDefault(key) + count.item<long>();
    }

    internal void Add(string key, Tensor logits, Tensor indices, Tensor weights)
    {
        if (RecordIndices) _indices.Add((key, indices.detach().cpu().DetachFromDisposeScope()));
        if (RecordWeights) _weights.Add((key, weights.detach().to(ScalarType.Float32).cpu().DetachFromDisposeScope()));
        if (RecordLogits) _logits.Add((key, logits.DetachFromDisposeScope()));
    }

    /// <summary>Per projection key, the (tokens, k) indices of every forward, concatenated over calls.</summary>
    public IReadOnlyDictionary<string, long[][]> Trace() => Rows(_indices, t => t.data<long>().ToArray());

    /// <summary>
    /// Per projection key, the (tokens, k) routing weights of every forward (needs <see cref="RecordWeights"/>),
    /// row for row and slot for slot with <see cref="Trace"/>.
    /// </summary>
    public IReadOnlyDictionary<string, float[][]> Weights() => Rows(_weights, t => t.data<float>().ToArray());

    private static IReadOnlyDictionary<string, T[][]> Rows<T>(List<(string Key, Tensor Value)> recorded, Func<Tensor, T[]> read)
    {
        var result = new Dictionary<string, T[][]>();
        foreach (var group in recorded.GroupBy(p => p.Key))
            result[group.Key] = group.SelectMany(p =>
            {
                var t = p.Value;
                int k = (int)t.shape[^1];
                using var flatTensor = t.reshape(-1, k).contiguous();
                var flat = read(flatTensor);
                return Enumerable.Range(0, flat.Length / k).Select(i => flat.AsSpan(i * k, k).ToArray());
            }).ToArray();
        return result;
    }

    /// <summary>Gate logits per projection, in forward order: (…, L) float32 each.</summary>
    public IReadOnlyList<(string Key, Tensor Logits)> Logits => _logits;

    public void Clear()
    {
        foreach (var (_, t) in _indices) t.Dispose();
        foreach (var (_, t) in _weights) t.Dispose();
        foreach (var (_, t) in _logits) t.Dispose();
        foreach (var (_, t) in _inputs) t.Dispose();
        _inputs.Clear();
        _indices.Clear();
        _weights.Clear();
        _logits.Clear();
        _nearTies.Clear();
        _gateAgreement.Clear();
    }

    public void Dispose() => Clear();
}
