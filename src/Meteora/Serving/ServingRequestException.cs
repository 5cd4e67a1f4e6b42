namespace Meteora.Serving;

/// <summary>A request the engine cannot serve as given (the client's fault): the message and the field it names.</summary>
public sealed class ServingRequestException(string message, string? param = null, string code = "invalid_value") : Exception(message)
{
    /// <summary>The request field at fault (OpenAI's <c>param</c>), or null.</summary>
    public string? Param { get; } = param;
    /// <summary>OpenAI-style error code.</summary>
    public string Code { get; } = code;
}

/// <summary>The waiting queue is full (HTTP 429: retry later), or the engine is stopping (<see cref="Stopping"/>: HTTP 503).</summary>
public sealed class EngineBusyException(string message, bool stopping = false) : Exception(message)
{
    public bool Stopping { get; } = stopping;
}
