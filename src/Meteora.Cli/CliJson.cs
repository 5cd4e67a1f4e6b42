using System.Text.Encodings.Web;
using System.Text.Json;

namespace Meteora.Cli;

/// <summary>JSON as the CLI prints it: readable text (no \u escapes for +, &amp;, non-ASCII), compact by default.</summary>
public static class CliJson
{
    public static readonly JsonSerializerOptions Compact = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    public static readonly JsonSerializerOptions Indented = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, WriteIndented = true };

    public static string Serialize<T>(T value, bool indented = false) => JsonSerializer.Serialize(value, indented ? Indented : Compact);
}
