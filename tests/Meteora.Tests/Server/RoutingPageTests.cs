using PuppeteerSharp;
using SkiaSharp;

namespace Meteora.Tests.Server;

/// <summary>The routing page at / in a real browser (headless Chromium): it streams an answer and colours each token by its adapter.</summary>
public class RoutingPageTests(TinyServer server) : IClassFixture<TinyServer>
{
    [ChromiumFact]
    public async Task ThePageStreamsAnAnswerWithEveryTokenColouredByItsAdapter()
    {
        await using var browser = await Puppeteer.LaunchAsync(new LaunchOptions
        {
            Headless = true, ExecutablePath = ChromiumFactAttribute.Executable,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        });
        await using var page = await browser.NewPageAsync();
        await page.SetViewportAsync(new ViewPortOptions { Width = 1000, Height = 700 });
        await page.GoToAsync(server.Server.Address + "/?prompt=reverse%3A%20abc&model=meteora&max_tokens=12&top_k=2&run=1");
        await page.WaitForSelectorAsync("body[data-state=done]", new WaitForSelectorOptions { Timeout = 60_000 });

        // Every generated token is a span with its top adapter, that adapter's colour, and a hover text per layer group.
        var tokens = await page.EvaluateExpressionAsync<TokenSpan[]>(
            "[...document.querySelectorAll('#output .tok')].map(s => ({ text: s.textContent, adapter: s.dataset.adapter || '', " +
            "colour: getComputedStyle(s).backgroundColor, title: s.title }))");
        Assert.Equal(12, tokens.Length);
        var names = server.Model.AdapterNames.ToHashSet();
        Assert.All(tokens, t =>
        {
            Assert.Contains(t.Adapter, names);
            Assert.StartsWith("rgb(", t.Colour);
            Assert.Contains("layers 0–0", t.Title);
            Assert.Contains("layers 1–1", t.Title);
        });
        // Tokens routed to different adapters get different colours; one adapter keeps one colour.
        Assert.All(tokens.GroupBy(t => t.Adapter), g => Assert.Single(g.Select(t => t.Colour).Distinct()));
        Assert.Equal(tokens.Select(t => t.Adapter).Distinct().Count(), tokens.Select(t => t.Colour).Distinct().Count());
        string status = await page.EvaluateExpressionAsync<string>("document.getElementById('status').textContent");
        Assert.Equal("done (length)", status);

        // The screenshot shows the colours: its pixels include each used adapter's colour.
        byte[] png = await page.ScreenshotDataAsync(new ScreenshotOptions { Type = ScreenshotType.Png });
        Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "meteora-page"));
        await File.WriteAllBytesAsync(Path.Combine(Path.GetTempPath(), "meteora-page", "routing-page.png"), png);
        using var bitmap = SKBitmap.Decode(png);
        var seen = new HashSet<(byte, byte, byte)>();
        for (int y = 0; y < bitmap.Height; y += 2)
            for (int x = 0; x < bitmap.Width; x += 2) { var c = bitmap.GetPixel(x, y); seen.Add((c.Red, c.Green, c.Blue)); }
        foreach (var colour in tokens.Select(t => t.Colour).Distinct())
        {
            var rgb = colour["rgb(".Length..^1].Split(',').Select(v => byte.Parse(v.Trim())).ToArray();
            Assert.Contains((rgb[0], rgb[1], rgb[2]), seen);
        }
    }

    public sealed class TokenSpan
    {
        public string Text { get; set; } = "";
        public string Adapter { get; set; } = "";
        public string Colour { get; set; } = "";
        public string Title { get; set; } = "";
    }
}
