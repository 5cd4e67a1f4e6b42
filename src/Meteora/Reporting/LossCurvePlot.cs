using System.Text.Json;
using Meteora.IO;
using ScottPlot;

namespace Meteora.Reporting;

/// <summary>Draws the loss curves of a training run from its <c>metrics.jsonl</c> into a PNG.</summary>
public static class LossCurvePlot
{
    /// <summary>
    /// Plots every training series named in <paramref name="series"/> against the step, with evaluation points
    /// ("eval_" + name) as markers. Writes <paramref name="pngPath"/> atomically.
    /// </summary>
    public static void Write(string metricsPath, string pngPath, IReadOnlyList<string> series, string title)
    {
        var train = new Dictionary<string, (List<double> X, List<double> Y)>();
        var eval = new Dictionary<string, (List<double> X, List<double> Y)>();
        foreach (var line in File.ReadLines(metricsPath))
        {
            using var doc = JsonDocument.Parse(line);
            var o = doc.RootElement;
            double step = o.GetProperty("step").GetDouble();
            bool isEval = o.GetProperty("kind").GetString() == "eval";
            foreach (var name in series)
            {
                string key = isEval ? "eval_" + name : name;
                if (!o.TryGetProperty(key, out var v) || v.ValueKind != JsonValueKind.Number) continue;
                var target = isEval ? eval : train;
                if (!target.TryGetValue(name, out var points)) target[name] = points = (new(), new());
                points.X.Add(step);
                points.Y.Add(v.GetDouble());
            }
        }
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        int colour = 0;
        foreach (var name in series)
        {
            var c = palette.GetColor(colour++);
            if (train.TryGetValue(name, out var t))
            {
                var line = plot.Add.ScatterLine(t.X.ToArray(), t.Y.ToArray(), c);
                line.LegendText = name;
            }
            if (eval.TryGetValue(name, out var e))
            {
                var points = plot.Add.ScatterPoints(e.X.ToArray(), e.Y.ToArray(), c);
                points.MarkerSize = 8;
                points.LegendText = "eval " + name;
            }
        }
        plot.Title(title);
        plot.XLabel("step");
        plot.YLabel("loss");
        plot.ShowLegend();
        AtomicFile.Write(pngPath, tmp => plot.SavePng(tmp, 900, 540));
    }
}
