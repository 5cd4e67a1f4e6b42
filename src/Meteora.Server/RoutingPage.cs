using Microsoft.AspNetCore.Http;

namespace Meteora.Server;

/// <summary>The routing page at <c>/</c> (Page/index.html, embedded): a prompt box whose answer streams in, each token coloured by its adapter.</summary>
public static class RoutingPage
{
    private static readonly Lazy<string> Html = new(() =>
    {
        using var stream = typeof(RoutingPage).Assembly.GetManifestResourceStream("Meteora.Server.index.html")
            ?? throw new InvalidOperationException("the routing page is not embedded in Meteora.Server");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    });

    public static async Task WriteAsync(HttpContext http)
    {
        http.Response.ContentType = "text/html; charset=utf-8";
        await http.Response.WriteAsync(Html.Value);
    }
}
