using System.Text.Json;
using System.Text.Json.Nodes;
using Meteora.Server.OpenAi;
using Meteora.Serving;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Meteora.Server;

/// <summary>
/// The OpenAI-compatible HTTP server (ASP.NET Core, Kestrel) in front of a <see cref="ServingEngine"/>:
/// <c>POST /v1/completions</c>, <c>POST /v1/chat/completions</c>, <c>GET /v1/models</c>, <c>GET /health</c>,
/// <c>GET /ready</c>, <c>GET /metrics</c> and the routing page at <c>/</c>. Every error is OpenAI's error
/// object with its status; client input never makes a 500.
/// </summary>
public sealed class MeteoraServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ServingEngine _engine;
    private readonly ServerMetrics _metrics;
    private readonly RequestParser _parser;
    private readonly CompletionHandler _handler;
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public MeteoraServer(ServingEngine engine, ServerOptions options)
    {
        options.Validate();
        _engine = engine;
        _metrics = new ServerMetrics(engine);
        _parser = new RequestParser(engine, options.ChatTemplate);
        _handler = new CompletionHandler(engine, _metrics);
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls($"http://{options.Host}:{options.Port}");
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = options.MaxBodyBytes);
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = options.DrainTimeout);
        builder.Logging.ClearProviders();
        if (options.Log) builder.Logging.AddSimpleConsole(c => c.SingleLine = true).SetMinimumLevel(LogLevel.Information)
            .AddFilter("Microsoft.AspNetCore", LogLevel.Warning).AddFilter("Microsoft.Hosting", LogLevel.Warning);
        _app = builder.Build();
        Map(_app);
    }

    /// <summary>The address it listens on (after <see cref="StartAsync"/>), e.g. <c>http://127.0.0.1:8000</c>.</summary>
    public string Address => _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();

    public Task StartAsync(CancellationToken cancel = default) => _app.StartAsync(cancel);

    /// <summary>After <see cref="StartAsync"/>: returns at Ctrl-C / SIGTERM once running requests finished (up to the drain timeout).</summary>
    public Task WaitForShutdownAsync() => _app.WaitForShutdownAsync();

    public Task StopAsync() => _app.StopAsync();

    private void Map(WebApplication app)
    {
        app.MapPost("/v1/completions", http => Guarded(http, async () => await _handler.HandleAsync(http, _parser.Completion(await BodyAsync(http)))));
        app.MapPost("/v1/chat/completions", http => Guarded(http, async () => await _handler.HandleAsync(http, _parser.ChatCompletion(await BodyAsync(http)))));
        app.MapGet("/v1/models", http => CompletionHandler.WriteJsonAsync(http, 200, Models()));
        app.MapGet("/v1/models/{name}", http => Guarded(http, () =>
        {
            string name = (string)http.Request.RouteValues["name"]!;
            var model = Models()["data"]!.AsArray().FirstOrDefault(m => (string?)m!["id"] == name)
                ?? throw new ApiException(404, $"The model '{name}' does not exist", "model", "model_not_found");
            return CompletionHandler.WriteJsonAsync(http, 200, model.DeepClone());
        }));
        app.MapGet("/health", http => CompletionHandler.WriteJsonAsync(http, 200, new JsonObject { ["status"] = "ok" }));
        app.MapGet("/ready", http => CompletionHandler.WriteJsonAsync(http, _engine.Ready ? 200 : 503, new JsonObject
        {
            ["status"] = _engine.Ready ? "ready" : _engine.WarmupError is null ? "warming up" : "failed",
            ["error"] = _engine.WarmupError,
        }));
        app.MapGet("/metrics", async http =>
        {
            http.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await _metrics.WriteAsync(http.Response.Body, http.RequestAborted);
        });
        app.MapGet("/", http => RoutingPage.WriteAsync(http));
        // Anything else: 405 (with OpenAI's error object) for a wrong method on one of the paths above, else 404.
        app.MapFallback(http => Guarded(http, () => throw (IsEndpointPath(http.Request.Path)
            ? new ApiException(405, $"{http.Request.Method} is not allowed on {http.Request.Path}", null, "method_not_allowed")
            : new ApiException(404, $"{http.Request.Method} {http.Request.Path} is not an endpoint of this server", null, "not_found"))));
    }

    private static readonly HashSet<string> EndpointPaths = ["/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/ready", "/metrics", "/"];

    private static bool IsEndpointPath(PathString path) =>
        EndpointPaths.Contains(path.Value ?? "") || path.StartsWithSegments("/v1/models");

    /// <summary>Answers any failure with OpenAI's error object: ours with their status, malformed bodies 400/413, the rest 500.</summary>
    private static async Task Guarded(HttpContext http, Func<Task> action)
    {
        try
        {
            await action();
        }
        catch (Exception e) when (!http.Response.HasStarted)
        {
            var error = e switch
            {
                ApiException a => a,
                // A string with a lone surrogate or bad UTF-8 parses as JSON but cannot be read as text.
                InvalidOperationException or FormatException when http.Request.Method == "POST"
                    => new ApiException(400, $"the request body holds a string that is not valid text: {e.Message}", null, "invalid_json"),
                BadHttpRequestException { StatusCode: 413 } => new ApiException(413, "the request body is larger than the server accepts", null, "request_too_large"),
                BadHttpRequestException b => new ApiException(b.StatusCode, b.Message),
                OperationCanceledException when http.RequestAborted.IsCancellationRequested => null,
                _ => new ApiException(500, $"internal error: {e.GetType().Name}: {e.Message}", null, "internal_error"),
            };
            if (error is null) return;
            if (error.Status == 429) http.Response.Headers.RetryAfter = "1";
            await CompletionHandler.WriteJsonAsync(http, error.Status, error.ToJson());
        }
    }

    /// <summary>The request body as JSON; malformed JSON is a 400, an oversized body a 413.</summary>
    private static async Task<JsonElement> BodyAsync(HttpContext http)
    {
        try
        {
            using var doc = await JsonDocument.ParseAsync(http.Request.Body, default, http.RequestAborted);
            return doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"the request body is not valid JSON: {e.Message}", null, "invalid_json");
        }
    }

    private JsonObject Models()
    {
        var m = _engine.Model;
        var data = new JsonArray();
        JsonObject Entry(string name, string? parent, string root) => new()
        {
            ["id"] = name, ["object"] = "model", ["created"] = _created, ["owned_by"] = "meteora", ["root"] = root, ["parent"] = parent,
            ["max_model_len"] = _engine.MaxContext,
        };
        if (m.Meteora is not null) data.Add(Entry(ServingModel.MeteoraName, ServingModel.BaseName, m.BaseFolder));
        foreach (var a in m.AdapterNames) data.Add(Entry(a, ServingModel.BaseName, m.BaseFolder));
        data.Add(Entry(ServingModel.BaseName, null, m.BaseFolder));
        return new JsonObject { ["object"] = "list", ["data"] = data };
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
