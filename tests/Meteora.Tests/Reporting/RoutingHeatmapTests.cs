using System.Buffers.Binary;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Meteora.Moe;
using Meteora.Reporting;
using Meteora.Tokenization;
using static TorchSharp.torch;

namespace Meteora.Tests.Reporting;

public class RoutingHeatmapTests
{
    [Fact]
    public void ShareCountsFirstChoicesOverProjections()
    {
        // Two projections, three tokens, top-2 traces: only the first index of each pair counts.
        var trace = new Dictionary<string, long[][]>
        {
            ["p0"] = [[0, 1], [2, 0], [1, 2]],
            ["p1"] = [[0, 2], [1, 0], [1, 0]],
        };
        var share = RoutingHeatmap.Shares(trace, adapters: 3);
        Assert.Equal(1.0, share[0, 0]);                 // token 0: both chose adapter 0
        Assert.Equal((0.0, 0.5, 0.5), (share[0, 1], share[1, 1], share[2, 1]));
        Assert.Equal(1.0, share[1, 2]);
        for (int t = 0; t < 3; t++) Assert.Equal(1.0, share[0, t] + share[1, t] + share[2, t], 9);
    }

    [Fact]
    public void WritesAPngAndAnHtmlTable()
    {
        using var dir = Fixture.TempDir();
        var share = new double[2, 3];
        share[1, 0] = share[1, 1] = share[0, 2] = 1;
        RoutingHeatmap.Write(dir["h.png"], dir["h.html"], share, ["a", "<b>", "c"], ["add", "upper"], "t");
        Assert.True(new FileInfo(dir["h.png"]).Length > 1000);
        string html = File.ReadAllText(dir["h.html"]);
        Assert.Contains("&lt;b&gt;", html);          // token text is escaped
        Assert.Contains("<th>upper</th>", html);
    }

    /// <summary>
    /// A composite-style answer over four projections in two layers: "sum: 12\n" on adapter 0 (add), then
    /// "ABC <&\"'>" on adapter 1 (upper), with one token split 2–2 (tie → lower index) and one 3–1.
    /// </summary>
    private static (Dictionary<string, long[][]> Trace, Dictionary<string, float[][]> Weights, string[] Tokens, int[] Top) Synthetic()
    {
        string[] tokens = ["s", "u", "m", ":", " ", "1", "2", "\n", "A", "B", "C", " ", "<", "&", "\"", "'", ">"];
        var top = tokens.Select((_, t) => t < 8 ? 0 : 1).ToArray();
        string[] keys = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.mlp.up_proj"];
        var trace = keys.ToDictionary(k => k, _ => new long[tokens.Length][]);
        var weights = keys.ToDictionary(k => k, _ => new float[tokens.Length][]);
        for (int t = 0; t < tokens.Length; t++)
            for (int p = 0; p < keys.Length; p++)
            {
                // Token 7 ("\n") splits 2–2 between adapters 0 and 1 (tie: adapter 0); token 9 ("B") goes 3–1 to adapter 1.
                int first = t == 7 ? (p < 2 ? 0 : 1) : t == 9 ? (p == 0 ? 2 : 1) : top[t];
                int second = (first + 1) % 3;
                trace[keys[p]][t] = [first, second];
                weights[keys[p]][t] = [0.75f, 0.25f];
            }
        return (trace, weights, tokens, top);
    }

    [Fact]
    public void HtmlShowsEveryTokenInOrderColouredByItsTopAdapter()
    {
        var (trace, weights, tokens, top) = Synthetic();
        string[] adapters = ["add", "upper", "reverse"];
        var share = RoutingHeatmap.Shares(trace, adapters.Length);
        Assert.Equal(top, RoutingHeatmap.TopAdapters(share));
        var groups = RoutingHeatmap.GroupWeights(trace, weights, adapters.Length);
        string html = RoutingHeatmap.Html(share, tokens, adapters, "composite", groups);

        var spans = Regex.Matches(html, "<span class=\"tok\" data-t=\"(\\d+)\" data-adapter=\"(\\d+)\" style=\"background:(#[0-9a-f]{6})\" title=\"([^\"]*)\">([^<]*)</span>");
        Assert.Equal(tokens.Length, spans.Count);
        for (int t = 0; t < tokens.Length; t++)
        {
            var m = spans[t];
            Assert.Equal(t.ToString(), m.Groups[1].Value);
            Assert.Equal(top[t].ToString(), m.Groups[2].Value);
            Assert.Equal(RoutingHeatmap.AdapterColor(top[t]), m.Groups[3].Value);
            Assert.Equal(RoutingHeatmap.HtmlText(tokens[t]), WebUtility.HtmlDecode(m.Groups[5].Value));
        }
        // The answer reads back as the text, the newline shown as ↵ before the line break.
        Assert.Equal("sum: 12↵\nABC <&\"'>", string.Concat(spans.Select(m => WebUtility.HtmlDecode(m.Groups[5].Value))));
        // The adapter colours differ and the legend names each adapter on its colour.
        Assert.Equal(3, adapters.Select((_, a) => RoutingHeatmap.AdapterColor(a)).Distinct().Count());
        for (int a = 0; a < adapters.Length; a++)
            Assert.Contains($"<span class=\"key\" style=\"background:{RoutingHeatmap.AdapterColor(a)}\">{adapters[a]}</span>", html);

        // Hover: shares, then the mean weights of each layer group. At "B", layer 0 has reverse 0.75 + add 0.25 in one
        // projection and upper 0.75 + reverse 0.25 in the other → reverse 0.5, upper 0.375, add 0.125.
        string tip = WebUtility.HtmlDecode(spans[9].Groups[4].Value);
        Assert.Equal("#9 B → upper\ntop-1 share: upper 0.75, reverse 0.25\nlayer 0: reverse 0.50, upper 0.38, add 0.13\nlayer 1: upper 0.75, reverse 0.25", tip);
        Assert.StartsWith("#4 ␣ → add\n", WebUtility.HtmlDecode(spans[4].Groups[4].Value));
    }

    [Fact]
    public void GroupWeightsAverageEachLayersProjections()
    {
        var (trace, weights, tokens, _) = Synthetic();
        var groups = RoutingHeatmap.GroupWeights(trace, weights, adapters: 3);
        Assert.Equal(["layer 0", "layer 1"], groups.Select(g => g.Name));
        foreach (var g in groups)
        {
            Assert.Equal((tokens.Length, 3), (g.Weights.GetLength(0), g.Weights.GetLength(1)));
            for (int t = 0; t < tokens.Length; t++) Assert.Equal(1.0, g.Weights[t, 0] + g.Weights[t, 1] + g.Weights[t, 2], 6);
        }
        Assert.Equal((0.75, 0.25, 0.0), (groups[0].Weights[0, 0], groups[0].Weights[0, 1], groups[0].Weights[0, 2]));
        Assert.Equal((0.75, 0.75), (groups[0].Weights[7, 0], groups[1].Weights[7, 1]));   // token 7: layer 0 → add, layer 1 → upper
    }

    [Fact]
    public void HtmlEscapesTokensAdapterNamesAndTitle()
    {
        var share = new double[2, 4];
        share[0, 0] = share[1, 1] = share[1, 2] = share[0, 3] = 1;
        string html = RoutingHeatmap.Html(share, ["<script>", "&amp;", "\"x\"", "'"], ["<i>add</i>", "up&per"], "a <b> title",
            [new LayerGroupWeights("layer <0>", new double[4, 2] { { 1, 0 }, { 0, 1 }, { 0, 1 }, { 1, 0 } })]);
        Assert.DoesNotContain("<script>", html);
        Assert.DoesNotContain("<i>", html);
        Assert.DoesNotContain("<b>", html);
        Assert.DoesNotContain("<0>", html);
        Assert.Contains("&lt;script&gt;", html);
        Assert.Contains("&amp;amp;", html);                      // the token's own text "&amp;", escaped once more
        Assert.Contains("&quot;x&quot;", html);
        Assert.Contains("&lt;i&gt;add&lt;/i&gt;", html);
        Assert.Contains("up&amp;per", html);
        Assert.Contains("<title>a &lt;b&gt; title</title>", html);
        Assert.Contains("layer &lt;0&gt;: ", html);
        // No attribute is cut short by a quote from the data: every title attribute closes before the tag ends.
        foreach (Match m in Regex.Matches(html, "title=\"([^\"]*)\""))
            Assert.DoesNotContain('<', m.Groups[1].Value);
        Assert.DoesNotContain("<script", html.ToLowerInvariant());   // self-contained, nothing to run
    }

    [Fact]
    public void TokenTextShowsBytesThatAreNotUtf8AsHex()
    {
        Assert.Equal("é", RoutingHeatmap.TokenText("é"u8));
        Assert.Equal("<0xC3>", RoutingHeatmap.TokenText([0xC3]));
        Assert.Equal("<0xA9>", RoutingHeatmap.TokenText([0xA9]));
        Assert.Equal("a<0xE2><0x82>", RoutingHeatmap.TokenText([(byte)'a', 0xE2, 0x82]));
        Assert.Equal("<0xFF>b", RoutingHeatmap.TokenText([0xFF, (byte)'b']));
        Assert.Equal("", RoutingHeatmap.TokenText([]));
    }

    [Fact]
    public void LabelsMakeWhitespaceAndControlBytesVisible()
    {
        Assert.Equal("␣", RoutingHeatmap.Label(" "));
        Assert.Equal("↵", RoutingHeatmap.Label("\n"));
        Assert.Equal("⇥", RoutingHeatmap.Label("\t"));
        Assert.Equal("␍", RoutingHeatmap.Label("\r"));
        Assert.Equal("<0x07>", RoutingHeatmap.Label("\a"));
        Assert.Equal("<U+200B>", RoutingHeatmap.Label("\u200B"));
        Assert.Equal("␣the", RoutingHeatmap.Label(" the"));
        Assert.Equal("∅", RoutingHeatmap.Label(""));
        Assert.Equal("abcdefghijk…", RoutingHeatmap.Label("abcdefghijklmnop"));
        Assert.Equal(" ", RoutingHeatmap.HtmlText(" "));
        Assert.Equal("↵\n", RoutingHeatmap.HtmlText("\n"));
    }

    private static (int Width, int Height) PngSize(string path)
    {
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(0x89, bytes[0]);
        Assert.Equal("PNG", Encoding.ASCII.GetString(bytes, 1, 3));
        return (BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)), BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)));
    }

    /// <summary>A byte-level answer of <paramref name="tokens"/> characters switching adapter every 40 tokens.</summary>
    private static (double[,] Share, string[] Tokens) Answer(int tokens, int adapters)
    {
        string text = string.Concat(Enumerable.Range(0, tokens / 8 + 1).Select(i => $"Q{i}: {i * 37 % 1000} + 5 =\n"));
        var share = new double[adapters, tokens];
        for (int t = 0; t < tokens; t++)
        {
            share[t / 40 % adapters, t] = 0.75;
            share[(t / 40 + 1) % adapters, t] = 0.25;
        }
        return (share, text[..tokens].Select(c => c.ToString()).ToArray());
    }

    [Fact]
    public void PngHasAColumnPerTokenAndGrowsWithTheAnswer()
    {
        using var dir = Fixture.TempDir();
        string[] adapters = ["reverse", "add", "upper"];
        var sizes = new List<(int Width, int Height, long Bytes)>();
        foreach (int n in new[] { 12, 60, 400 })
        {
            var (share, tokens) = Answer(n, adapters.Length);
            string png = dir[$"r{n}.png"];
            RoutingHeatmap.WritePng(png, share, tokens, adapters, $"MeteoRA routing, {n} tokens");
            var (w, h) = PngSize(png);
            long bytes = new FileInfo(png).Length;
            Assert.InRange(bytes, 5_000, 2_000_000);
            sizes.Add((w, h, bytes));
        }
        // 12 → 60 tokens: one panel, wider (a fixed column width per token); 400 tokens: wrapped into stacked panels.
        Assert.True(sizes[1].Width > sizes[0].Width, $"{sizes[0]} → {sizes[1]}");
        Assert.True(sizes[1].Width - sizes[0].Width >= 48 * 16, $"{sizes[0]} → {sizes[1]}: under 16 px a token");
        Assert.Equal(sizes[0].Height, sizes[1].Height);
        Assert.True(sizes[2].Height >= 4 * sizes[1].Height / 2, $"{sizes[1]} → {sizes[2]}");
        Assert.True(sizes[2].Width <= 2000, $"{sizes[2]}");
        Assert.True((long)sizes[2].Width * sizes[2].Height > 4L * sizes[1].Width * sizes[1].Height / 2);

        // The data is drawn: the top-1 strip shows every adapter's colour, and the shares many Viridis shades.
        using var bitmap = SkiaSharp.SKBitmap.Decode(dir["r400.png"]);
        var colours = bitmap.Pixels.Select(p => $"#{p.Red:x2}{p.Green:x2}{p.Blue:x2}").ToHashSet();
        for (int a = 0; a < adapters.Length; a++) Assert.Contains(RoutingHeatmap.AdapterColor(a), colours);
        Assert.True(colours.Count > 50, $"{colours.Count} colours");
    }

    [Fact]
    public void PngFitsWordTokensByTurningTheirLabels()
    {
        using var dir = Fixture.TempDir();
        var share = new double[2, 30];
        for (int t = 0; t < 30; t++) share[t % 2, t] = 1;
        var words = Enumerable.Range(0, 30).Select(i => i % 3 == 0 ? " the" : i % 3 == 1 ? "<0xE2>" : "\n").ToArray();
        var chars = Enumerable.Range(0, 30).Select(i => i % 2 == 0 ? "a" : " ").ToArray();
        RoutingHeatmap.WritePng(dir["w.png"], share, words, ["a", "b"], "words");
        RoutingHeatmap.WritePng(dir["c.png"], share, chars, ["a", "b"], "chars");
        var (ww, wh) = PngSize(dir["w.png"]);
        var (cw, ch) = PngSize(dir["c.png"]);
        Assert.Equal(cw, ww);           // same column width: multi-character labels are turned, not widened
        Assert.True(wh > ch);           // and the token axis grows to hold them
    }

    [Fact]
    public void TokenBytesGiveEachTokensOwnBytes()
    {
        using var dir = Fixture.TempDir();
        // The demo's byte-level tokenizer: one token per byte, partial UTF-8 included.
        ByteLevelTokenizerWriter.Write(dir["bytes"]);
        using (var tok = HfTokenizer.Load(dir["bytes"]))
        {
            var ids = tok.Encode("é ok\n", addSpecialTokens: false);
            Assert.Equal("é ok\n"u8.ToArray(), ids.SelectMany(tok.TokenBytes).ToArray());
            Assert.Equal(["<0xC3>", "<0xA9>", " ", "o", "k", "\n"], ids.Select(i => RoutingHeatmap.TokenText(tok.TokenBytes(i))));
            Assert.Equal(["<0xC3>", "<0xA9>", "␣", "o", "k", "↵"], ids.Select(i => RoutingHeatmap.Label(RoutingHeatmap.TokenText(tok.TokenBytes(i)))));
            Assert.Equal(ByteLevelTokenizerWriter.Eos, Encoding.UTF8.GetString(tok.TokenBytes(tok.EosId!.Value)));
            _ = tok.Decode([ids[0]]);   // decoding half a character alone does not throw
        }
        // The fixture's byte-level BPE with merges ("Ġ=>" is one token).
        using (var tok = HfTokenizer.Load(Fixture.Base))
        {
            const string text = "reverse: abc => cba\nupper é";
            var ids = tok.Encode(text, addSpecialTokens: false);
            Assert.Equal(Encoding.UTF8.GetBytes(text), ids.SelectMany(tok.TokenBytes).ToArray());
            Assert.Contains(ids, i => tok.TokenBytes(i).Length > 1);
        }
        // A Llama 2 style tokenizer: ▁ is a space, <0xC3> a byte.
        using (var tok = HfTokenizer.Load(Tokenization.MetaspaceTokenizerTests.Write(dir)))
        {
            Assert.Equal(" hi"u8.ToArray(), tok.TokenBytes(263));
            Assert.Equal([0xC3], tok.TokenBytes(198));
            Assert.Equal("<s>"u8.ToArray(), tok.TokenBytes(1));
        }
    }

    [Fact]
    public void RecordedWeightsGoSlotForSlotWithTheTrace()
    {
        using var mm = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        using var ids = tensor(Fixture.PromptIds(0).Select(i => (long)i).ToArray(), [1, Fixture.PromptIds(0).Length]);
        foreach (int k in new[] { 1, 2 })
        {
            mm.Configure(topK: k, temperature: 1.0);
            using var recorder = new RoutingRecorder { RecordIndices = true, RecordWeights = true };
            mm.Attach(recorder);
            try { using var _ = no_grad(); using var logits = mm.Forward(ids); }
            finally { mm.Attach(null); }
            var trace = recorder.Trace();
            var weights = recorder.Weights();
            Assert.Equal(trace.Keys.Order(), weights.Keys.Order());
            foreach (var (key, rows) in trace)
            {
                Assert.Equal(ids.shape[1], rows.Length);
                for (int t = 0; t < rows.Length; t++)
                {
                    Assert.Equal(k, weights[key][t].Length);
                    Assert.Equal(1.0, weights[key][t].Sum(), 5);                                  // softmax over the top-k
                    for (int j = 1; j < k; j++) Assert.True(weights[key][t][j - 1] >= weights[key][t][j]);   // descending, as the indices
                }
            }
        }
    }

    [Fact]
    public void WritesTheHeatmapOfARealAnswer()
    {
        using var dir = Fixture.TempDir();
        using var mm = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        mm.Configure(topK: 2);
        using var tok = HfTokenizer.Load(Fixture.Base);
        var prompt = Fixture.PromptIds(0);
        var answer = tok.Encode("upper: ABC\nadd: 12", addSpecialTokens: false);
        RoutingHeatmap.WriteForAnswer(mm, tok, prompt, answer, dir.Path, 2);
        Assert.True(new FileInfo(dir["routing-composite-2.png"]).Length > 5_000);
        string html = File.ReadAllText(dir["routing-composite-2.html"]);
        var spans = Regex.Matches(html, "<span class=\"tok\"[^>]*title=\"([^\"]*)\">([^<]*)</span>");
        Assert.Equal(answer.Length, spans.Count);
        Assert.Equal("upper: ABC↵\nadd: 12", string.Concat(spans.Select(m => WebUtility.HtmlDecode(m.Groups[2].Value))));
        // Two layers, top-2: each hover names both layers with weights.
        Assert.All(spans, m => Assert.Matches("\nlayer 0: \\w+ [01]\\.\\d\\d.*\nlayer 1: \\w+ [01]\\.\\d\\d", WebUtility.HtmlDecode(m.Groups[1].Value)));
        foreach (var name in mm.AdapterNames) Assert.Contains($">{name}</span>", html);
    }
}
