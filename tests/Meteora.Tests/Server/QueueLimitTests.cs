using System.Text.Json;
using Meteora.Serving;

namespace Meteora.Tests.Server;

/// <summary>A server with one row and no waiting room: a second request while one runs gets 429 with Retry-After.</summary>
public sealed class OneRowServer : IAsyncLifetime
{
    public TinyServer Inner { get; } = new() { EngineOptions = new EngineOptions { MaxBatch = 1, MaxQueue = 0, MaxContext = 128 } };
    public Task InitializeAsync() => Inner.InitializeAsync();
    public Task DisposeAsync() => Inner.DisposeAsync();
}

public class QueueLimitTests(OneRowServer fixture) : IClassFixture<OneRowServer>
{
    [Fact]
    public async Task AFullQueueIsA429WithRetryAfterAndAClosedStreamFreesItsRow()
    {
        var server = fixture.Inner;
        using var cancel = new CancellationTokenSource();
        var longRun = server.Stream("/v1/completions", new { model = "base", prompt = "a", max_tokens = 120, stream = true }, cancel.Token);
        Assert.True(await TinyServer.WaitUntil(() => server.Engine.Running == 1, TimeSpan.FromSeconds(30)), "the long stream never started");
        var (status, body, response) = await server.Post("/v1/completions", new { model = "base", prompt = "b", max_tokens = 2 });
        Assert.Equal(429, status);
        Assert.True(response.Headers.RetryAfter is not null, "Retry-After header");
        Assert.Equal("queue_full", body.GetProperty("error").GetProperty("code").GetString());
        cancel.Cancel();                                                  // the client goes away mid-stream
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => longRun);
        await TinyServer.WaitUntil(() => server.Engine.Running == 0, TimeSpan.FromSeconds(30));
        Assert.Equal(0, server.Engine.Running);
        Assert.Equal(200, (await server.Post("/v1/completions", new { model = "base", prompt = "b", max_tokens = 2 })).Status);
    }
}
