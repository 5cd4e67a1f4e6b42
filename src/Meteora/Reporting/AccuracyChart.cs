using Meteora.IO;
using ScottPlot;

namespace Meteora.Reporting;

/// <summary>A bar chart of accuracy per task (0–1), written as a PNG.</summary>
public static class AccuracyChart
{
    public static void Write(string pngPath, string title, IReadOnlyList<(string Label, double Value)> bars)
    {
        var plot = new Plot();
        var barList = bars.Select((b, i) => new Bar { Position = i, Value = b.Value, FillColor = Colors.SteelBlue }).ToList();
        plot.Add.Bars(barList);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            bars.Select((b, i) => new Tick(i, b.Label)).ToArray());
        plot.Axes.Bottom.TickLabelStyle.Rotation = 45;
        plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleLeft;
        plot.Axes.Bottom.MinimumSize = 90;   // room for the rotated task names
        plot.Axes.SetLimitsY(0, 1.05);
        plot.YLabel("accuracy");
        plot.Title(title);
        AtomicFile.Write(pngPath, tmp => plot.SavePng(tmp, Math.Max(500, 60 * bars.Count + 200), 480));
    }
}
