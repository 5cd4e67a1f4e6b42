namespace Meteora.Serving;

/// <summary>
/// How one sequence picks and reports its tokens (OpenAI's request fields): temperature 0 is greedy; otherwise
/// temperature + nucleus sampling from a generator seeded with <see cref="Seed"/>. Generation ends at an EOS
/// token (unless <see cref="IgnoreEos"/>), at a stop string (not included in the text), or after
/// <see cref="MaxTokens"/> tokens.
/// </summary>
public sealed record SamplingSettings
{
    public int MaxTokens { get; init; } = 16;
    /// <summary>0 = greedy (argmax).</summary>
    public double Temperature { get; init; } = 1.0;
    public double TopP { get; init; } = 1.0;
    /// <summary>Sampling seed; null = a random one.</summary>
    public long? Seed { get; init; }
    /// <summary>Up to 4 non-empty strings that end generation; the text ends before the first one found.</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>Alternatives to report per token with its log-probability (0…20); null = no log-probabilities.</summary>
    public int? Logprobs { get; init; }
    public bool IgnoreEos { get; init; }

    /// <summary>Longest stop string: matching partial stops costs up to its length squared per token on the engine thread.</summary>
    public const int MaxStopLength = 512;

    /// <summary>Checks ranges; throws <see cref="ServingRequestException"/> naming the field.</summary>
    public void Validate()
    {
        if (MaxTokens < 1) throw new ServingRequestException($"max_tokens: {MaxTokens} must be at least 1", "max_tokens");
        if (!(Temperature >= 0 && Temperature <= 2)) throw new ServingRequestException($"temperature: {Temperature} must be between 0 and 2", "temperature");
        if (!(TopP > 0 && TopP <= 1)) throw new ServingRequestException($"top_p: {TopP} must be in (0, 1]", "top_p");
        if (Stop.Count > 4) throw new ServingRequestException($"stop: at most 4 sequences, not {Stop.Count}", "stop");
        if (Stop.Any(string.IsNullOrEmpty)) throw new ServingRequestException("stop: sequences must not be empty", "stop");
        if (Stop.Any(s => s.Length > MaxStopLength)) throw new ServingRequestException($"stop: sequences must be at most {MaxStopLength} characters", "stop");
        if (Logprobs is < 0 or > 20) throw new ServingRequestException($"logprobs: {Logprobs} must be between 0 and 20", "logprobs");
    }
}
