namespace Meteora.Serving;

/// <summary>Limits of a <see cref="ServingEngine"/>.</summary>
public sealed record EngineOptions
{
    /// <summary>Sequences decoded together (KV-cache rows).</summary>
    public int MaxBatch { get; init; } = 64;
    /// <summary>Requests that may wait for a free row; more are refused (<see cref="EngineBusyException"/>).</summary>
    public int MaxQueue { get; init; } = 256;
    /// <summary>Prompt + generated tokens per sequence; null = the model's max_position_embeddings.</summary>
    public int? MaxContext { get; init; }
    /// <summary>Prompt tokens prefilled per engine step, so a long prompt delays running decodes by at most one chunk.</summary>
    public int PrefillChunk { get; init; } = 256;
    /// <summary>Layer groups that routing is reported and counted by.</summary>
    public int RoutingGroups { get; init; } = 4;
    /// <summary>
    /// On CUDA, replay decode steps from CUDA graphs (<see cref="DecodeGraphs"/>); ignored elsewhere. On by default:
    /// on an H200 it took 32 streams from 266 to 1 634 decode tokens/s (docs/BENCHMARKS.md, "Serving").
    /// </summary>
    public bool CudaGraphs { get; init; } = true;

    public void Validate(int modelPositions)
    {
        if (MaxBatch is < 1 or > 4096) throw new MeteoraException($"--max-batch: {MaxBatch} must be between 1 and 4096");
        if (MaxQueue is < 0 or > 1_000_000) throw new MeteoraException($"--max-queue: {MaxQueue} must be between 0 and 1000000");
        if (MaxContext is { } c && (c < 2 || c > modelPositions))
            throw new MeteoraException($"--max-context: {c} must be between 2 and the model's {modelPositions} positions");
        if (PrefillChunk is < 1 or > 1_000_000) throw new MeteoraException($"--prefill-chunk: {PrefillChunk} must be between 1 and 1000000");
        if (RoutingGroups is < 1 or > 64) throw new MeteoraException($"routing groups: {RoutingGroups} must be between 1 and 64");
    }
}
