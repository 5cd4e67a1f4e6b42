namespace Meteora.Moe;

/// <summary>
/// The automatic choice between <see cref="MixingStrategy.Dense"/> and <see cref="MixingStrategy.Segment"/>.
/// Dense multiplies every token by all ΣR = L·r stacked rank rows — L/k times the FLOPs that routed tokens need,
/// but in two large GEMMs with no host synchronisation. Segment does only the routed work, at the price of a
/// sort, a host round trip and one GEMM pair per active adapter. Dense wins until the stacked rank is a sizeable
/// share of the projection and there are enough tokens to amortise segment's fixed costs. Measured with
/// <c>meteora bench layer</c> on an H100 (docs/BENCHMARKS.md), dense won every configuration of the grid — up to
/// L = 256, r = 16 (ΣR = 4096 = in) at N = 4096, where it took 0.79 ms against segment's 18.7 ms — so segment is
/// chosen only far beyond it, where dense's adapter FLOPs exceed 16× the base GEMM's.
/// </summary>
internal static class StrategyChooser
{
    /// <summary>Segment needs at least this many tokens.</summary>
    public const int SegmentMinTokens = 4096;
    /// <summary>…and a stacked rank above this multiple of min(in, out).</summary>
    public const double SegmentRankShare = 8.0;

    public static MixingStrategy Choose(long tokens, int totalRank, int inFeatures, int outFeatures) =>
        tokens >= SegmentMinTokens && totalRank > SegmentRankShare * Math.Min(inFeatures, outFeatures)
            ? MixingStrategy.Segment : MixingStrategy.Dense;
}
