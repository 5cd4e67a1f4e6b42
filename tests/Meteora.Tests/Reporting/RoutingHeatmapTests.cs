using Meteora.Reporting;

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
}
