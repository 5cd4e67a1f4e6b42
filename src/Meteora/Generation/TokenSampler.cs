using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Generation;

/// <summary>
/// Chooses the next token of every row from last-position logits: argmax, or temperature + top-p. Sampling
/// draws on the CPU from a seeded generator, so a seed gives the same tokens on every device.
/// </summary>
internal sealed class TokenSampler : IDisposable
{
    private readonly GenerationOptions _options;
    private readonly Generator? _generator;
    private readonly long[] _suppress;
    private Tensor? _suppressIndex;           // (S,) int64 on the logits' device, made on the first step

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
            logits = logits.index_fill(-1, _suppressIndex, HeldScalars.NegativeInfinity);          // (B, V)
        }
        if (_options.Greedy) return logits.argmax(-1).MoveToOuterDisposeScope();
        using var t = _options.Temperature.ToScalar();   // held for the op (see RmsNorm)
        var probs = Nucleus(logits.to(ScalarType.Float32).cpu().div(t).softmax(-1), _options.TopP);   // (B, V)
        return multinomial(probs, 1, false, _generator).squeeze(-1).to(logits.device).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Top-p filtering of probabilities (…, V): keeps the smallest prefix of tokens (by descending probability)
    /// whose mass reaches <paramref name="topP"/> and zeroes the rest (unnormalised; multinomial does not need it).
    /// The first token always stays. Returns <paramref name="probs"/> itself when topP ≥ 1.
    /// </summary>
    public static Tensor Nucleus(Tensor probs, double topP)
    {
        if (topP >= 1.0) return probs;
        var (sorted, order) = probs.sort(-1, descending: true);
        var before = sorted.cumsum(-1) - sorted;                      // mass strictly before each token
        sorted = sorted.masked_fill(before > topP, 0);
        return zeros_like(probs).scatter_(-1, order, sorted);
    }

    public void Dispose()
    {
        _generator?.Dispose();
        _suppressIndex?.Dispose();
    }
}
