using System.Net.Http.Json;
using System.Text.Json;

namespace Meteora.Tests.Server;

public class DrainTests
{
    /// <summary>Stopping the server (what Ctrl-C / SIGTERM do) lets a running stream finish, then stops taking requests.</summary>
    [Fact]
    public async Task StoppingTheServerDrainsARunningStreamToItsEnd()
    {
        var server = new TinyServer();
        await server.InitializeAsync();
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = JsonContent.Create(new { model = "meteora", prompt = "a", max_tokens = 60, temperature = 0, stream = true, stream_options = new { include_usage = true } }),
            };
            using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            var first = await reader.ReadLineAsync();                                    // the stream has started
            Assert.StartsWith("data: ", first);
            var stopping = server.Server.StopAsync();
            var lines = new List<string>();
            while (await reader.ReadLineAsync() is { } line) if (line.StartsWith("data: ")) lines.Add(line[6..]);
            await stopping;
            Assert.Equal("[DONE]", lines[^1]);
            var usage = JsonDocument.Parse(lines[^2]).RootElement.GetProperty("usage");
            Assert.Equal(60, usage.GetProperty("completion_tokens").GetInt32());
            await Assert.ThrowsAnyAsync<HttpRequestException>(() => server.Http.GetAsync("/health"));   // no longer listening
        }
        finally
        {
            await server.DisposeAsync();
        }
    }
}
