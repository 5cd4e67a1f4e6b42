namespace Meteora;

/// <summary>
/// A user-facing error: bad input, a missing or corrupt file, an impossible option. The message is one line that
/// names the file (or option) and the cause; the CLI prints it without a stack trace and exits with code 1.
/// </summary>
public sealed class MeteoraException : Exception
{
    public MeteoraException(string message) : base(message) { }
    public MeteoraException(string message, Exception inner) : base(message, inner) { }
}
