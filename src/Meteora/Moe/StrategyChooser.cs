namespace Meteora.Moe;

/// <summary>
/// The automatic choice between <see cref="MixingStrategy.Dense"/> and <see cref="MixingStrategy.Segment"/>.
/// Dense multiplies every token by all ΣR = L·r stacked rank rows — L/k times the FLOPs that routed tokens need,
/// but in two large GEMMs with no host synchronisation. Segment does only the routed work, at the price of a
/// sort, a host round trip and one GEMM pair per active adapter. Dense wins until the stacked rank is a sizeable
/// share of the projection and there are enough tokens to amortise segment's fixed costs; the thresholds were
/// measured with <c>meteora bench layer</c> (docs/BENCHMARKS.md).
/// </summary>
public static class StrategyChooser
{
    /// <summary>Segment needs at least this many tokens.</summary>
    public const int SegmentMinTokens = 1024;
    /// <summary>…and a stacked rank above this share of min(in, out).</summary>
    public const double SegmentRankShare = 0.5;

    public static MixingStrategy Choose(long tokens, int totalRank, int inFeatures, int outFeatures) =>
        tokens >= SegmentMinTokens && totalRank > SegmentRankShare * Math.Min(inFeatures, outFeatures)
            ? MixingStrategy.Segment : MixingStrategy.Dense;
}
