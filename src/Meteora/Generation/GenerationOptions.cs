namespace Meteora.Generation;

/// <summary>
/// How to pick tokens: greedy (default) or temperature + nucleus (top-p) sampling from a seeded generator.
/// Greedy runs exactly <see cref="MaxNewTokens"/> steps unless <see cref="StopAtEos"/> is set.
/// </summary>
public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 64;
    public bool Greedy { get; init; } = true;
    public double Temperature { get; init; } = 1.0;
    public double TopP { get; init; } = 1.0;
    public long Seed { get; init; } = 0;
    public bool StopAtEos { get; init; }
    /// <summary>Token ids that end a row when <see cref="StopAtEos"/> is set.</summary>
    public IReadOnlyList<int> EosIds { get; init; } = [];
    /// <summary>Token ids never chosen (their logits are set to −∞), like transformers' <c>suppress_tokens</c>.</summary>
    public IReadOnlyList<int> SuppressIds { get; init; } = [];
    /// <summary>Ends a row once this returns true for the tokens it has generated so far (a stopping criterion).</summary>
    public Func<IReadOnlyList<int>, bool>? StopWhen { get; init; }
    /// <summary>
    /// On CUDA, replay decode steps from a CUDA graph (<see cref="StaticDecoder"/>) when libtorch supports it;
    /// ignored on CPU. The tokens are the same either way; only the host's cost per step differs.
    /// </summary>
    public bool CudaGraph { get; init; } = true;

    /// <summary>Checks ranges; a bad value is a one-line error naming the option.</summary>
    public void Validate()
    {
        if (MaxNewTokens < 0 || MaxNewTokens > 1_000_000) throw new MeteoraException($"--max-new-tokens: {MaxNewTokens} is out of range (0…1000000)");
        if (!Greedy && !(Temperature > 0 && double.IsFinite(Temperature))) throw new MeteoraException($"--temperature-sampling: {Temperature} must be a positive number");
        if (!Greedy && !(TopP > 0 && TopP <= 1)) throw new MeteoraException($"--top-p: {TopP} must be in (0, 1]");
    }
}
