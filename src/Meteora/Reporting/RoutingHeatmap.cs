using System.Buffers;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Meteora.IO;
using Meteora.Moe;
using Meteora.Tokenization;
using ScottPlot;
using SkiaSharp;

namespace Meteora.Reporting;

/// <summary>Mean routing weight of every adapter at every token over the MeteoRA projections of one layer group.</summary>
/// <param name="Name">The group, e.g. "layer 3" (projections keyed <c>model.layers.3.…</c>).</param>
/// <param name="Weights">[token, adapter]: the adapter's routing weight averaged over the group's projections (0 where not chosen).</param>
public sealed record LayerGroupWeights(string Name, double[,] Weights);

/// <summary>
/// The paper's Figure 4 view of one generation: which adapter every generated token was routed to, with the token's
/// text on the token axis so one sees where the routing switches between the sub-problems of a composite answer.
/// <list type="bullet">
/// <item>PNG: one column per token, labelled with its text (␣ space, ↵ newline, ⇥ tab, &lt;0xHH&gt; for bytes that are
/// not printable text); one row per adapter shaded by the share of MeteoRA projections whose top-1 choice at that
/// token is that adapter (colour bar), and above them a strip coloured by the token's top-1 adapter (legend at the
/// top). Long answers wrap into stacked panels of at most about 1,400 px of columns each.</item>
/// <item>HTML: the answer text token by token, each token's background the colour of its top-1 adapter; hovering
/// shows the top-1 shares and, when known, the mean routing weights per layer group. The share table follows.</item>
/// </list>
/// </summary>
public static class RoutingHeatmap
{
    /// <summary>share[a, t] for adapter a and token t, from per-projection top-k traces (first choice counts).</summary>
    public static double[,] Shares(IReadOnlyDictionary<string, long[][]> trace, int adapters)
    {
        int tokens = trace.Values.First().Length;
        var share = new double[adapters, tokens];
        foreach (var perToken in trace.Values)
            for (int t = 0; t < tokens; t++) share[perToken[t][0], t] += 1.0 / trace.Count;
        return share;
    }

    /// <summary>
    /// Per layer group (projections keyed <c>…layers.{i}.…</c>, in layer order; other keys form their own group), the
    /// routing weight of every adapter at every token averaged over the group's projections. <paramref name="weights"/>
    /// holds the weights slot for slot with <paramref name="trace"/> (see <see cref="RoutingRecorder.Weights"/>).
    /// </summary>
    public static IReadOnlyList<LayerGroupWeights> GroupWeights(IReadOnlyDictionary<string, long[][]> trace,
        IReadOnlyDictionary<string, float[][]> weights, int adapters)
    {
        var result = new List<LayerGroupWeights>();
        foreach (var group in trace.Keys.GroupBy(GroupOf).OrderBy(g => g.Key.Order).ThenBy(g => g.Key.Name, StringComparer.Ordinal))
        {
            var keys = group.ToList();
            int tokens = trace[keys[0]].Length;
            var mean = new double[tokens, adapters];
            foreach (var key in keys)
            {
                var idx = trace[key];
                var w = weights[key];
                for (int t = 0; t < tokens; t++)
                    for (int j = 0; j < idx[t].Length; j++) mean[t, idx[t][j]] += w[t][j] / keys.Count;
            }
            result.Add(new LayerGroupWeights(group.Key.Name, mean));
        }
        return result;
    }

    private static (int Order, string Name) GroupOf(string key)
    {
        var m = Regex.Match(key, @"(?:^|\.)layers\.(\d+)\.");
        return m.Success ? (int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), $"layer {m.Groups[1].Value}") : (int.MaxValue, key);
    }

    /// <summary>Top-1 adapter of every token: the adapter with the largest share (the lowest index on a tie).</summary>
    public static int[] TopAdapters(double[,] share)
    {
        var top = new int[share.GetLength(1)];
        for (int t = 0; t < top.Length; t++)
            for (int a = 1; a < share.GetLength(0); a++)
                if (share[a, t] > share[top[t], t]) top[t] = a;
        return top;
    }

    private static readonly string[] Tableau10 =
        ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

    /// <summary>
    /// The colour of adapter <paramref name="adapter"/> as "#rrggbb" (HTML backgrounds, the PNG's top-1 strip and
    /// legend): Tableau 10 lightened for legible text on it, then golden-angle hues.
    /// </summary>
    public static string AdapterColor(int adapter)
    {
        (double r, double g, double b) c;
        if (adapter < Tableau10.Length)
        {
            int v = int.Parse(Tableau10[adapter].AsSpan(1), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            c = ((v >> 16) & 255, (v >> 8) & 255, v & 255);
        }
        else c = Hsl(adapter * 137.508 % 360, 0.55, 0.5);
        const double tint = 0.45;   // share of white mixed in
        int Mix(double x) => (int)Math.Round(x + (255 - x) * tint);
        return $"#{Mix(c.r):x2}{Mix(c.g):x2}{Mix(c.b):x2}";

        static (double, double, double) Hsl(double h, double s, double l)
        {
            double ch = (1 - Math.Abs(2 * l - 1)) * s, x = ch * (1 - Math.Abs(h / 60 % 2 - 1)), m = l - ch / 2;
            var (r, g, b) = h < 60 ? (ch, x, 0.0) : h < 120 ? (x, ch, 0.0) : h < 180 ? (0.0, ch, x)
                : h < 240 ? (0.0, x, ch) : h < 300 ? (x, 0.0, ch) : (ch, 0.0, x);
            return ((r + m) * 255, (g + m) * 255, (b + m) * 255);
        }
    }

    /// <summary>
    /// A token's text from its bytes: UTF-8 where the bytes are valid, <c>&lt;0xHH&gt;</c> per byte where they are not
    /// (a byte-level token holding part of a multi-byte character).
    /// </summary>
    public static string TokenText(ReadOnlySpan<byte> bytes)
    {
        var sb = new StringBuilder();
        while (!bytes.IsEmpty)
        {
            var status = Rune.DecodeFromUtf8(bytes, out var rune, out int consumed);
            if (status == OperationStatus.Done) sb.Append(rune.ToString());
            else
            {
                consumed = Math.Max(consumed, 1);
                foreach (byte b in bytes[..consumed]) sb.Append($"<0x{b:X2}>");
            }
            bytes = bytes[consumed..];
        }
        return sb.ToString();
    }

    /// <summary>
    /// A token's text as an axis label: space ␣, newline ↵, tab ⇥, carriage return ␍, other control, format and
    /// whitespace characters as &lt;0xHH&gt; (below U+0100) or &lt;U+XXXX&gt;, empty text ∅; longer than 12 characters cut with "…".
    /// </summary>
    public static string Label(string tokenText)
    {
        var sb = new StringBuilder();
        foreach (var r in tokenText.EnumerateRunes()) sb.Append(Visible(r, keepSpace: false));
        if (sb.Length == 0) return "∅";
        var elements = new StringInfo(sb.ToString());
        return elements.LengthInTextElements > 12 ? elements.SubstringByTextElements(0, 11) + "…" : sb.ToString();
    }

    private static string Visible(Rune r, bool keepSpace) => r.Value switch
    {
        ' ' => keepSpace ? " " : "␣",
        '\n' => keepSpace ? "↵\n" : "↵",
        '\t' => "⇥",
        '\r' => "␍",
        _ when Rune.IsControl(r) || Rune.IsWhiteSpace(r) || Rune.GetUnicodeCategory(r) is UnicodeCategory.Format
                or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator or UnicodeCategory.Surrogate
                or UnicodeCategory.PrivateUse or UnicodeCategory.OtherNotAssigned
            => r.Value < 0x100 ? $"<0x{r.Value:X2}>" : $"<U+{r.Value:X4}>",
        _ => r.ToString(),
    };

    /// <summary>Writes the PNG heatmap and the HTML view (see the class summary); <paramref name="groups"/> adds per-layer weights to the HTML hovers.</summary>
    public static void Write(string pngPath, string htmlPath, double[,] share, IReadOnlyList<string> tokenTexts,
        IReadOnlyList<string> adapterNames, string title, IReadOnlyList<LayerGroupWeights>? groups = null)
    {
        WritePng(pngPath, share, tokenTexts, adapterNames, title);
        AtomicFile.WriteAllText(htmlPath, Html(share, tokenTexts, adapterNames, title, groups));
    }

    // PNG geometry (pixels).
    private const int MaxDataWidth = 1400, ColumnWidth = 18, RowHeight = 24, HeaderHeight = 64, LabelFontSize = 13;

    /// <summary>
    /// The PNG: stacked panels of at most ~<see cref="MaxDataWidth"/> px of token columns, each with the adapters'
    /// top-1 shares (Viridis, colour bar) and the top-1 strip, and under every column its token's <see cref="Label"/>
    /// (upright where it fits the column, else turned a quarter); a header with the title and the adapter colours.
    /// </summary>
    public static void WritePng(string pngPath, double[,] share, IReadOnlyList<string> tokenTexts, IReadOnlyList<string> adapterNames, string title)
    {
        int tokens = tokenTexts.Count, adapters = adapterNames.Count;
        if (share.GetLength(0) != adapters || share.GetLength(1) != tokens)
            throw new ArgumentException($"share is ({share.GetLength(0)}, {share.GetLength(1)}) but there are {adapters} adapters and {tokens} tokens");
        var labels = tokenTexts.Select(Label).ToList();
        using var labelFont = new SKFont(Fonts.GetTypeface(FontFor(string.Concat(labels), Fonts.Monospace), bold: false, italic: false), LabelFontSize);
        using var captionFont = new SKFont(Fonts.GetTypeface(Sans.Value, bold: false, italic: false), 12);
        var labelWidth = labels.Select(l => labelFont.MeasureText(l)).ToList();
        var upright = labelWidth.Select(w => w <= ColumnWidth - 3).ToList();
        float turned = labelWidth.Where((w, i) => !upright[i]).DefaultIfEmpty(0).Max();

        int perPanelMax = MaxDataWidth / ColumnWidth;
        int panels = Math.Max(1, (tokens + perPanelMax - 1) / perPanelMax);
        int perPanel = Math.Max(1, (tokens + panels - 1) / panels);   // balanced: the last panel is not a stub
        string Caption(int start, int count) => count == 1 ? $"token {start}" : $"tokens {start}–{start + count - 1}";

        PixelPadding pad;
        using (var tickFont = new SKFont(Fonts.GetTypeface(FontFor(string.Concat(adapterNames), Sans.Value), bold: false, italic: false), 13))
        {
            float names = adapterNames.Append("top-1").Max(n => tickFont.MeasureText(n)) + 16;
            float caption = captionFont.MeasureText(Caption(Math.Max(0, tokens - perPanel), perPanel)) + 12;
            pad = new PixelPadding(left: (float)Math.Ceiling(Math.Max(Math.Max(names, caption), 60)), right: 110,
                bottom: (float)Math.Ceiling(Math.Max(turned + 14, 24)), top: 8);
        }
        int dataHeight = (adapters + 1) * RowHeight;
        int panelHeight = (int)(pad.Top + dataHeight + pad.Bottom) + 16;   // a gap between panels
        int width = (int)Math.Ceiling(Math.Max(pad.Left + perPanel * ColumnWidth + pad.Right, pad.Left + HeaderWidth(title, adapterNames) + 20));
        int height = HeaderHeight + panels * panelHeight;

        var colormap = new ScottPlot.Colormaps.Viridis();
        using var surface = SKSurface.Create(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul))
            ?? throw new MeteoraException($"{pngPath}: could not allocate a {width}×{height} image");
        var canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        DrawHeader(canvas, title, adapterNames, pad.Left);
        using var ink = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var grey = new SKPaint { Color = new SKColor(0x55, 0x55, 0x55), IsAntialias = true };

        for (int p = 0; p < panels; p++)
        {
            int start = p * perPanel, count = Math.Min(perPanel, tokens - start);
            if (count <= 0) break;
            var plot = new Plot();
            plot.Font.Set(FontFor(string.Concat(adapterNames), Sans.Value));
            plot.Layout.Fixed(pad);
            var chunk = new double[adapters, count];
            for (int a = 0; a < adapters; a++)
                for (int t = 0; t < count; t++) chunk[a, t] = share[a, start + t];
            var hm = plot.Add.Heatmap(chunk);
            hm.Colormap = colormap;
            hm.ManualRange = new ScottPlot.Range(0, 1);
            // Cells centred on integers: token column t at x = t, adapter a at y = adapters − 1 − a (row 0 on top).
            hm.Rectangle = new CoordinateRect(-0.5, count - 0.5, -0.5, adapters - 0.5);
            var bar = plot.Add.ColorBar(hm);
            bar.Label = "top-1 share";
            int[] top = TopAdapters(chunk);
            for (int t = 0; t < count; t++)
            {
                var rect = plot.Add.Rectangle(t - 0.5, t + 0.5, adapters - 0.5 + 0.15, adapters + 0.5);
                rect.FillStyle.Color = ScottPlot.Color.FromHex(AdapterColor(top[t]));
                rect.LineStyle.Width = 0;
            }
            plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
                adapterNames.Select((n, i) => new Tick(adapters - 1 - i, n)).Append(new Tick(adapters, "top-1")).ToArray());
            plot.Axes.Left.TickLabelStyle.FontSize = 13;
            plot.Axes.Left.MinorTickStyle.Length = 0;
            // Tick marks only: the token labels are drawn below (upright or turned per label).
            plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
                Enumerable.Range(0, count).Select(t => new Tick(t, "")).ToArray());
            plot.Axes.Bottom.MajorTickStyle.Length = 3;
            plot.Axes.Bottom.MinorTickStyle.Length = 0;
            plot.HideGrid();
            plot.Axes.SetLimits(-0.5, perPanel - 0.5, -0.5, adapters + 0.5);
            // Each panel on its own surface: a plot clears the canvas it renders on.
            using var panel = SKSurface.Create(new SKImageInfo(width, panelHeight, SKColorType.Rgba8888, SKAlphaType.Premul))
                ?? throw new MeteoraException($"{pngPath}: could not allocate a {width}×{panelHeight} panel");
            plot.Render(panel);
            var pc = panel.Canvas;
            float axisY = plot.GetPixel(new Coordinates(0, -0.5)).Y;
            for (int t = 0; t < count; t++)
            {
                int i = start + t;
                float x = plot.GetPixel(new Coordinates(t, -0.5)).X;
                if (upright[i]) pc.DrawText(labels[i], x, axisY + 6 + LabelFontSize, SKTextAlign.Center, labelFont, ink);
                else
                {
                    // Turned a quarter clockwise, read downwards from the axis, centred on the column.
                    pc.Save();
                    pc.Translate(x, axisY + 6);
                    pc.RotateDegrees(90);
                    pc.DrawText(labels[i], 0, labelFont.Metrics.CapHeight / 2, SKTextAlign.Left, labelFont, ink);
                    pc.Restore();
                }
            }
            pc.DrawText(Caption(start, count), pad.Left - 8, axisY + 6 + LabelFontSize, SKTextAlign.Right, captionFont, grey);
            using var panelImage = panel.Snapshot();
            canvas.DrawImage(panelImage, 0, HeaderHeight + p * panelHeight);
        }

        using var image = surface.Snapshot();
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        AtomicFile.Write(pngPath, tmp => File.WriteAllBytes(tmp, png.ToArray()));
    }

    /// <summary>
    /// <paramref name="preferred"/> where it has every glyph of <paramref name="text"/> (␣ ↵ ⇥ …), else the family
    /// the system's font manager offers for the first missing character.
    /// </summary>
    private static string FontFor(string text, string preferred)
    {
        var typeface = Fonts.GetTypeface(preferred, bold: false, italic: false);   // ScottPlot's cached instance: not ours to dispose
        foreach (var r in text.EnumerateRunes())
            if (!typeface.ContainsGlyph(r.Value))
            {
                using var match = SKFontManager.Default.MatchCharacter(r.Value);
                return match?.FamilyName ?? preferred;
            }
        return preferred;
    }

    /// <summary>A sans-serif family that is installed (ScottPlot's default can resolve to a serif one on Linux).</summary>
    private static readonly Lazy<string> Sans = new(() =>
    {
        foreach (var family in new[] { "DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial", "Helvetica" })
        {
            using var match = SKFontManager.Default.MatchFamily(family);
            if (match?.FamilyName == family) return family;
        }
        return Fonts.Sans;
    });

    private static (SKFont Title, SKFont Text) HeaderFonts(string title, IReadOnlyList<string> adapterNames) =>
        (new SKFont(Fonts.GetTypeface(FontFor(title, Sans.Value), bold: true, italic: false), 18),
         new SKFont(Fonts.GetTypeface(FontFor(string.Concat(adapterNames), Sans.Value), bold: false, italic: false), 13));

    private const string LegendCaption = "top-1 adapter:";

    /// <summary>Pixels the header's title and legend take (the image is at least that wide).</summary>
    private static float HeaderWidth(string title, IReadOnlyList<string> adapterNames)
    {
        var (titleFont, textFont) = HeaderFonts(title, adapterNames);
        using (titleFont)
        using (textFont)
            return Math.Max(titleFont.MeasureText(title),
                textFont.MeasureText(LegendCaption) + 12 + adapterNames.Sum(n => 19 + textFont.MeasureText(n) + 16));
    }

    private static void DrawHeader(SKCanvas canvas, string title, IReadOnlyList<string> adapterNames, float left)
    {
        var (titleFont, textFont) = HeaderFonts(title, adapterNames);
        using (titleFont)
        using (textFont)
        {
            using var ink = new SKPaint { Color = SKColors.Black, IsAntialias = true };
            canvas.DrawText(title, left, 26, SKTextAlign.Left, titleFont, ink);
            float x = left;
            const float y = 50;
            canvas.DrawText(LegendCaption, x, y, SKTextAlign.Left, textFont, ink);
            x += textFont.MeasureText(LegendCaption) + 12;
            for (int a = 0; a < adapterNames.Count; a++)
            {
                using var fill = new SKPaint { Color = SKColor.Parse(AdapterColor(a)), IsAntialias = true };
                canvas.DrawRect(x, y - 11, 14, 14, fill);
                x += 19;
                canvas.DrawText(adapterNames[a], x, y, SKTextAlign.Left, textFont, ink);
                x += textFont.MeasureText(adapterNames[a]) + 16;
            }
        }
    }

    /// <summary>
    /// The HTML view: a legend of adapter colours, the answer token by token (background = top-1 adapter; title =
    /// token index, text, top-1 shares and per-group weights) and the share table. Self-contained, everything escaped.
    /// </summary>
    public static string Html(double[,] share, IReadOnlyList<string> tokenTexts, IReadOnlyList<string> adapterNames, string title,
        IReadOnlyList<LayerGroupWeights>? groups = null)
    {
        static string E(string s) => WebUtility.HtmlEncode(s);
        static string F(double v) => v.ToString("0.00", CultureInfo.InvariantCulture);
        int tokens = tokenTexts.Count, adapters = adapterNames.Count;
        var top = TopAdapters(share);
        var html = new StringBuilder();
        html.Append("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>").Append(E(title)).Append("</title><style>")
            .Append("body{font-family:sans-serif;margin:1.5em}")
            .Append(".legend span.key{display:inline-block;padding:2px 8px;margin-right:6px;border-radius:3px}")
            .Append(".answer{font-family:monospace;font-size:15px;line-height:1.9;white-space:pre-wrap;word-break:break-all;max-width:70em;border:1px solid #ccc;padding:8px}")
            .Append(".tok{border-radius:2px}.tok:hover{outline:1px solid #000}")
            .Append("td,th{padding:2px 4px;font-size:12px;text-align:center} th.token{writing-mode:vertical-rl;font-family:monospace}")
            .Append("</style></head><body><h1>").Append(E(title)).Append("</h1>\n<p class=\"legend\">Top-1 adapter: ");
        for (int a = 0; a < adapters; a++)
            html.Append($"<span class=\"key\" style=\"background:{AdapterColor(a)}\">").Append(E(adapterNames[a])).Append("</span>");
        html.Append("</p>\n<p>Each token's background is the adapter most MeteoRA projections chose first at that token; hover a token for the shares")
            .Append(groups is { Count: > 0 } ? " and the mean routing weights per layer" : "").Append(".</p>\n<div class=\"answer\">");
        for (int t = 0; t < tokens; t++)
        {
            var tip = new StringBuilder($"#{t} {Label(tokenTexts[t])} → {adapterNames[top[t]]}\ntop-1 share: ");
            tip.AppendJoin(", ", Enumerable.Range(0, adapters).Where(a => share[a, t] > 0).OrderByDescending(a => share[a, t])
                .Select(a => $"{adapterNames[a]} {F(share[a, t])}"));
            foreach (var g in groups ?? [])
            {
                tip.Append('\n').Append(g.Name).Append(": ");
                tip.AppendJoin(", ", Enumerable.Range(0, adapters).Where(a => g.Weights[t, a] >= 0.005).OrderByDescending(a => g.Weights[t, a])
                    .Select(a => $"{adapterNames[a]} {F(g.Weights[t, a])}"));
            }
            html.Append($"<span class=\"tok\" data-t=\"{t}\" data-adapter=\"{top[t]}\" style=\"background:{AdapterColor(top[t])}\" title=\"")
                .Append(E(tip.ToString()).Replace("\n", "&#10;")).Append("\">").Append(E(HtmlText(tokenTexts[t]))).Append("</span>");
        }
        html.Append("</div>\n<details><summary>Share of projections per token and adapter</summary><table><tr><th></th>");
        foreach (var t in tokenTexts) html.Append("<th class=\"token\">").Append(E(Label(t))).Append("</th>");
        html.Append("</tr>");
        for (int a = 0; a < adapters; a++)
        {
            html.Append("<tr><th>").Append(E(adapterNames[a])).Append("</th>");
            for (int t = 0; t < tokens; t++)
            {
                int shade = 255 - (int)Math.Round(200 * share[a, t]);
                html.Append($"<td title=\"{F(share[a, t])}\" style=\"background:rgb({shade},{shade},255)\">{share[a, t].ToString("0.0", CultureInfo.InvariantCulture)}</td>");
            }
            html.Append("</tr>");
        }
        html.Append("</table><p>Cell = share of MeteoRA projections whose top-1 adapter at that token is the row's adapter.</p></details></body></html>\n");
        return html.ToString();
    }

    /// <summary>
    /// A token's text as the HTML answer shows it (before escaping): spaces stay spaces (the coloured background shows
    /// them), a newline is ↵ and a line break, other invisible characters as in <see cref="Label"/>.
    /// </summary>
    public static string HtmlText(string tokenText)
    {
        var sb = new StringBuilder();
        foreach (var r in tokenText.EnumerateRunes()) sb.Append(Visible(r, keepSpace: true));
        return sb.Length == 0 ? "∅" : sb.ToString();
    }

    /// <summary>
    /// Routing of one composite answer: re-runs prompt + answer through <paramref name="mm"/> with a recorder and writes
    /// which adapter each answer token went to as <c>routing-composite-n.png</c> and <c>.html</c> in <paramref name="outDir"/>.
    /// <paramref name="method"/> names the router in the title (MeteoRA, or Arrow for an <see cref="ArrowModel"/>'s model).
    /// </summary>
    public static void WriteForAnswer(MeteoraModel mm, HfTokenizer tokenizer, int[] prompt, int[] output, string outDir, int n,
        string method = "MeteoRA")
    {
        if (output.Length == 0) return;
        using var recorder = new RoutingRecorder { RecordIndices = true, RecordWeights = true };
        using (TorchSharp.torch.no_grad())
        {
            mm.Attach(recorder);
            try
            {
                var all = prompt.Concat(output).Select(i => (long)i).ToArray();
                using var ids = TorchSharp.torch.tensor(all, [1, all.Length], device: mm.Model.Device);
                using var _ = mm.Forward(ids);
            }
            finally { mm.Attach(null); }
        }
        // Keep the answer tokens only: position t routes the token at t, so the answer starts at prompt.Length.
        // Only projections that carry adapters: where none does (the demo's layer-0 q/k/v) the choice changes nothing
        // and would count as votes for adapter 0.
        var adapted = mm.Projections.Where(p => p.Adapters.TotalRank > 0).Select(p => p.Site.Key).ToHashSet();
        var answerTrace = recorder.Trace().Where(kv => adapted.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value[prompt.Length..]);
        var answerWeights = recorder.Weights().Where(kv => adapted.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value[prompt.Length..]);
        var share = Shares(answerTrace, mm.AdapterNames.Count);
        var groups = GroupWeights(answerTrace, answerWeights, mm.AdapterNames.Count);
        var tokens = output.Select(t => TokenText(tokenizer.TokenBytes(t))).ToList();
        Directory.CreateDirectory(outDir);
        Write(Path.Combine(outDir, $"routing-composite-{n}.png"), Path.Combine(outDir, $"routing-composite-{n}.html"),
            share, tokens, mm.AdapterNames, $"{method} routing, first composite-{n} answer", groups);
    }
}
