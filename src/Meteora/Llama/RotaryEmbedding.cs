using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Llama;

/// <summary>
/// Rotary position embedding. Inverse frequencies are computed once (with Llama 3.1 scaling when the config asks
/// for it); cos/sin are formed per forward in float32 for the positions at hand, as transformers does.
/// </summary>
internal sealed class RotaryEmbedding : IDisposable
{
    private readonly Tensor _invFreq;   // (head_dim/2,) float32

    public RotaryEmbedding(LlamaConfig config, Device device)
    {
        using var scope = NewDisposeScope();
        int dim = config.HeadDim;
        var exponent = arange(0, dim, 2, ScalarType.Int64).to(ScalarType.Float32) / dim;
        var invFreq = 1.0f / pow(config.Rope.Theta, exponent);                         // (dim/2,)
        if (config.Rope.RopeType == "llama3") invFreq = ScaleLlama3(invFreq, config.Rope);
        _invFreq = invFreq.to(device).DetachFromDisposeScope();
    }

    /// <summary>Llama 3.1: long wavelengths divided by the factor, short kept, the band between interpolated.</summary>
    private static Tensor ScaleLlama3(Tensor invFreq, RopeParameters p)
    {
        double lowFreqWavelen = p.OriginalMaxPositionEmbeddings / p.LowFreqFactor;
        double highFreqWavelen = p.OriginalMaxPositionEmbeddings / p.HighFreqFactor;
        var wavelen = 2 * Math.PI / invFreq;
        var scaled = where(wavelen > lowFreqWavelen, invFreq / p.Factor, invFreq);
        var smooth = (p.OriginalMaxPositionEmbeddings / wavelen - p.LowFreqFactor) / (p.HighFreqFactor - p.LowFreqFactor);
        var smoothed = (1 - smooth) * scaled / p.Factor + smooth * scaled;
        var medium = (wavelen >= highFreqWavelen).logical_and(wavelen <= lowFreqWavelen);
        return where(medium, smoothed, scaled);
    }

    /// <summary>The inverse frequencies, (head_dim/2,) float32.</summary>
    internal Tensor InverseFrequencies => _invFreq;

    /// <summary>positions (B, T) → cos, sin each (B, T, 1, head_dim) in <paramref name="dtype"/>.</summary>
    public (Tensor Cos, Tensor Sin) Compute(Tensor positions, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var freqs = positions.to(ScalarType.Float32).unsqueeze(-1) * _invFreq;   // (B, T, dim/2)
        var emb = cat([freqs, freqs], -1).unsqueeze(2);                           // (B, T, 1, dim)
        var cos = emb.cos().to(dtype);
        var sin = emb.sin().to(dtype);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>x (B, T, H, d) rotated: x·cos + rotate_half(x)·sin.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        long half = x.shape[^1] / 2;
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        var rotated = cat([-x2, x1], -1);
        return (x * cos + rotated * sin).MoveToOuterDisposeScope();
    }

    public void Dispose() => _invFreq.Dispose();
}
