namespace Meteora.Server;

/// <summary>Where and how the HTTP server listens.</summary>
public sealed record ServerOptions
{
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>TCP port; 0 = any free port (tests read it from <see cref="MeteoraServer.Address"/>).</summary>
    public int Port { get; init; } = 8000;
    /// <summary>Largest request body; larger ones are answered 413.</summary>
    public long MaxBodyBytes { get; init; } = 8 * 1024 * 1024;
    /// <summary>How long Ctrl-C / SIGTERM waits for running requests to finish before stopping.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>
    /// The chat template for /v1/chat/completions: the model's own (<see cref="Meteora.Tokenization.HfChatTemplate.Load"/>)
    /// or a file; null uses the plain template (<see cref="OpenAi.ChatTemplate"/>).
    /// </summary>
    public Meteora.Tokenization.HfChatTemplate? ChatTemplate { get; init; }
    /// <summary>Log each request (ASP.NET Core's console logging); off in tests.</summary>
    public bool Log { get; init; } = true;

    public void Validate()
    {
        if (Port is < 0 or > 65535) throw new MeteoraException($"--port: {Port} must be between 0 and 65535");
        if (string.IsNullOrWhiteSpace(Host)) throw new MeteoraException("--host: must not be empty");
        if (MaxBodyBytes < 1024) throw new MeteoraException($"--max-body-bytes: {MaxBodyBytes} must be at least 1024");
    }
}
