using Meteora.Tokenization;
using Meteora.Moe;
using System.Net;
using System.Text;
using Meteora.IO;
using ScottPlot;

namespace Meteora.Reporting;

/// <summary>
/// The paper's Figure 4 view of one generation: for every token (x) and adapter (y), the share of MeteoRA
/// projections whose top-1 choice at that token is that adapter. Written as a PNG heatmap and as an HTML table
/// (tokens as column heads, one row per adapter, cell shade = share).
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

    public static void Write(string pngPath, string htmlPath, double[,] share, IReadOnlyList<string> tokenTexts, IReadOnlyList<string> adapterNames, string title)
    {
        var plot = new Plot();
        var hm = plot.Add.Heatmap(share);
        hm.Colormap = new ScottPlot.Colormaps.Viridis();
        plot.Add.ColorBar(hm);
        // ScottPlot draws row 0 of the array at the top: adapter i sits at y = count − 1 − i.
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            adapterNames.Select((n, i) => new Tick(adapterNames.Count - 1 - i, n)).ToArray());
        plot.Title(title);
        plot.XLabel("token");
        AtomicFile.Write(pngPath, tmp => plot.SavePng(tmp, Math.Max(600, 12 * tokenTexts.Count + 200), 80 + 28 * adapterNames.Count + 120));

        var html = new StringBuilder();
        html.Append("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>").Append(WebUtility.HtmlEncode(title))
            .Append("</title><style>body{font-family:sans-serif} td,th{padding:2px 4px;font-size:12px;text-align:center} th.token{writing-mode:vertical-rl;font-family:monospace}</style></head><body><h1>")
            .Append(WebUtility.HtmlEncode(title)).Append("</h1><table><tr><th></th>");
        foreach (var t in tokenTexts) html.Append("<th class=\"token\">").Append(WebUtility.HtmlEncode(t)).Append("</th>");
        html.Append("</tr>");
        for (int a = 0; a < adapterNames.Count; a++)
        {
            html.Append("<tr><th>").Append(WebUtility.HtmlEncode(adapterNames[a])).Append("</th>");
            for (int t = 0; t < tokenTexts.Count; t++)
            {
                int shade = 255 - (int)Math.Round(200 * share[a, t]);
                html.Append($"<td title=\"{share[a, t]:F2}\" style=\"background:rgb({shade},{shade},255)\">{share[a, t]:F1}</td>");
            }
            html.Append("</tr>");
        }
        html.Append("</table><p>Cell = share of MeteoRA projections whose top-1 adapter at that token is the row's adapter.</p></body></html>");
        AtomicFile.WriteAllText(htmlPath, html.ToString());
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
        using var recorder = new RoutingRecorder { RecordIndices = true };
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
        var answerTrace = recorder.Trace().ToDictionary(kv => kv.Key, kv => kv.Value[prompt.Length..]);
        var share = Shares(answerTrace, mm.AdapterNames.Count);
        var tokens = output.Select(t => tokenizer.Decode([t])).ToList();
        Directory.CreateDirectory(outDir);
        Write(Path.Combine(outDir, $"routing-composite-{n}.png"), Path.Combine(outDir, $"routing-composite-{n}.html"),
            share, tokens, mm.AdapterNames, $"{method} routing, first composite-{n} answer");
    }
}
