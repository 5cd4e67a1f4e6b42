using Meteora.Serving;

namespace Meteora.Server.OpenAi;

/// <summary>A parsed completions or chat request: what to generate, how, and how to answer.</summary>
public sealed record GenerationRequest
{
    /// <summary>True for /v1/chat/completions (chat objects, message deltas).</summary>
    public required bool Chat { get; init; }
    public required string Model { get; init; }
    /// <summary>Prompt token ids, BOS included (completions may carry several prompts).</summary>
    public required IReadOnlyList<int[]> Prompts { get; init; }
    /// <summary>The prompts' text, for <c>echo</c>.</summary>
    public required IReadOnlyList<string> PromptTexts { get; init; }
    public required SamplingSettings Sampling { get; init; }
    public required RouteChoice Route { get; init; }
    /// <summary>Choices per prompt.</summary>
    public int N { get; init; } = 1;
    public bool Stream { get; init; }
    /// <summary><c>stream_options.include_usage</c>: a last chunk with the usage.</summary>
    public bool IncludeUsage { get; init; }
    /// <summary>Completions' <c>echo</c>: the prompt text before the completion.</summary>
    public bool Echo { get; init; }
    /// <summary>Whether log-probabilities were asked for (completions: logprobs = n; chat: logprobs = true).</summary>
    public bool Logprobs => Sampling.Logprobs is not null;
}
