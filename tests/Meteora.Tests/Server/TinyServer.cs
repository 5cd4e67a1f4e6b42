using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Meteora.Server;
using Meteora.Serving;
using Meteora.Tests.Serving;

namespace Meteora.Tests.Server;

/// <summary>The shared tiny fixture served on a free loopback port (one per test class), with an HTTP client.</summary>
public sealed class TinyServer : IAsyncLifetime
{
    public ServingModel Model { get; private set; } = null!;
    public ServingEngine Engine { get; private set; } = null!;
    public MeteoraServer Server { get; private set; } = null!;
    public HttpClient Http { get; private set; } = null!;
    public EngineOptions EngineOptions { get; init; } = new() { MaxBatch = 8, MaxContext = 128, PrefillChunk = 8 };
    public long MaxBodyBytes { get; init; } = 64 * 1024;
    public Meteora.Tokenization.HfChatTemplate? ChatTemplate { get; init; }

    public async Task InitializeAsync()
    {
        Model = ServingModels.TinyMeteora();
        Engine = new ServingEngine(Model, EngineOptions);
        Server = new MeteoraServer(Engine, new ServerOptions { Port = 0, Log = false, MaxBodyBytes = MaxBodyBytes, DrainTimeout = TimeSpan.FromSeconds(5), ChatTemplate = ChatTemplate });
        await Server.StartAsync();
        Http = new HttpClient { BaseAddress = new Uri(Server.Address), Timeout = TimeSpan.FromSeconds(60) };
        await WaitUntil(() => Engine.Ready, TimeSpan.FromSeconds(30));
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await Server.StopAsync();
        await Server.DisposeAsync();
        Engine.Dispose();
        Model.Dispose();
    }

    /// <summary>
    /// Polls <paramref name="condition"/> every 10 ms until it holds or <paramref name="timeout"/> passes; returns
    /// whether it held. The engine frees a closed stream's row on its next step, which on a loaded 2-core CI machine
    /// can be seconds after the client saw its connection close, so "afterwards nothing is held" is checked this way.
    /// </summary>
    public static async Task<bool> WaitUntil(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) return false;
            await Task.Delay(10);
        }
        return true;
    }

    /// <summary>POSTs raw JSON text; returns the status and the parsed body.</summary>
    public async Task<(int Status, JsonElement Body, HttpResponseMessage Response)> Post(string path, string json)
    {
        var response = await Http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        return ((int)response.StatusCode, JsonDocument.Parse(text).RootElement.Clone(), response);
    }

    public Task<(int Status, JsonElement Body, HttpResponseMessage Response)> Post(string path, object body) =>
        Post(path, JsonSerializer.Serialize(body));

    /// <summary>Streams a request; returns the data payloads in order (the last is "[DONE]" when the stream ended normally).</summary>
    public async Task<List<string>> Stream(string path, object body, CancellationToken cancel = default)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body) };
        using var response = await Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.StartsWith("text/event-stream", response.Content.Headers.ContentType!.ToString());
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel));
        var events = new List<string>();
        while (await reader.ReadLineAsync(cancel) is { } line)
            if (line.StartsWith("data: ")) events.Add(line["data: ".Length..]);
        return events;
    }
}
