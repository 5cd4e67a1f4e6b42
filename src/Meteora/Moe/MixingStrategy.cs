namespace Meteora.Moe;

/// <summary>How a MeteoRA projection combines its routed adapters (DESIGN.md, "Mixing strategies").</summary>
public enum MixingStrategy
{
    /// <summary>Per adapter: select routed tokens, two small matmuls, scatter-add. Reference; launch-bound.</summary>
    Loop,
    /// <summary>Gather each token's top-k A and B and run two bmm (the original "bmm-torch"); memory N·k·r·(in+out).</summary>
    Gather,
    /// <summary>All adapters stacked: two dense GEMMs with the routing weights expanded over rank blocks. Default.</summary>
    Dense,
    /// <summary>Token-slots sorted by adapter, one GEMM per active adapter on contiguous rows.</summary>
    Segment,
    /// <summary>Default: dense or segment per projection and call, by stacked rank and token count (<see cref="StrategyChooser"/>).</summary>
    Auto,
}

public static class MixingStrategies
{
    public static MixingStrategy Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "loop" => MixingStrategy.Loop,
        "gather" => MixingStrategy.Gather,
        "dense" => MixingStrategy.Dense,
        "segment" => MixingStrategy.Segment,
        "auto" => MixingStrategy.Auto,
        _ => throw new MeteoraException($"--strategy: unknown strategy '{text}' (use auto, dense, segment, gather or loop)"),
    };
}
