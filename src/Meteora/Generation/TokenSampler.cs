using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Generation;

/// <summary>
/// Chooses the next token of every row from last-position logits: argmax, or temperature + top-p. Sampling
/// draws on the CPU from a seeded generator, so a seed gives the same tokens on every device.
/// </summary>
public sealed class TokenSampler : IDisposable
{
    private readonly GenerationOptions _options;
    private readonly Generator? _generator;
    private readonly long[] _suppress;
    private Tensor? _suppressIndex;           // (S,) int64 on the logits' device, made on the first step
    private readonly Scalar _minusInfinity = double.NegativeInfinity.ToScalar();   // held for the op (see RmsNorm)

    public TokenSampler(GenerationOptions options)
    {
        _options = options;
        _suppress = options.SuppressIds.Select(i => (long)i).ToArray();
        if (!options.Greedy) _generator = new Generator((ulong)options.Seed);
    }

    /// <summary>logits (B, V) → token ids (B,) int64.</summary>
    public Tensor Next(Tensor logits)
    {
        using var scope = NewDisposeScope();
        if (_suppress.Length > 0)
        {
            if (_suppressIndex is null || _suppressIndex.device_type != logits.device_type || _suppressIndex.device_index != logits.device_index)
            {
                _suppressIndex?.Dispose();
                _suppressIndex = tensor(_suppress, device: logits.device).DetachFromDisposeScope();
            }
            logits = logits.index_fill(-1, _suppressIndex, _minusInfinity);          // (B, V)
        }
        if (_options.Greedy) return logits.argmax(-1).MoveToOuterDisposeScope();
        using var t = _options.Temperature.ToScalar();   // held for the op (see RmsNorm)
        var probs = logits.to(ScalarType.Float32).cpu().div(t).softmax(-1);                  // (B, V)
        if (_options.TopP < 1.0)
        {
            // Keep the smallest prefix of tokens (by descending probability) whose mass reaches top_p.
            var (sorted, order) = probs.sort(-1, descending: true);
            var before = sorted.cumsum(-1) - sorted;                  // mass strictly before each token
            var drop = before > _options.TopP;                         // the first token always stays
            sorted = sorted.masked_fill(drop, 0);
            probs = zeros_like(probs).scatter_(-1, order, sorted);
        }
        return multinomial(probs, 1, false, _generator).squeeze(-1).to(logits.device).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        _generator?.Dispose();
        _suppressIndex?.Dispose();
        _minusInfinity.Dispose();
    }
}
