using System.Text.Json.Nodes;

namespace Meteora.Server.OpenAi;

/// <summary>
/// An error answered with OpenAI's error object <c>{"error": {"message", "type", "param", "code"}}</c> and an
/// HTTP status: 400 bad request, 404 unknown model, 413 body too large, 429 queue full, 500 server fault.
/// </summary>
public sealed class ApiException(int status, string message, string? param = null, string? code = null, string? type = null) : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type ?? status switch
    {
        429 => "rate_limit_exceeded",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };

    /// <summary>The error object as OpenAI sends it.</summary>
    public JsonObject ToJson() => new()
    {
        ["error"] = new JsonObject
        {
            ["message"] = Message, ["type"] = Type, ["param"] = Param, ["code"] = Code,
        },
    };

    public static ApiException BadRequest(string message, string? param = null, string? code = null) => new(400, message, param, code);
}
