namespace Meteora.Tests;

/// <summary>A fact that needs a Chromium browser (Debian's <c>chromium</c>, which scripts/setup.sh installs); skipped with the reason where there is none.</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    /// <summary>The browser: METEORA_CHROMIUM, else /usr/bin/chromium; null when neither exists.</summary>
    public static readonly string? Executable = new[] { Environment.GetEnvironmentVariable("METEORA_CHROMIUM"), "/usr/bin/chromium" }
        .FirstOrDefault(p => !string.IsNullOrEmpty(p) && File.Exists(p));

    public ChromiumFactAttribute()
    {
        if (Executable is null) Skip = "needs Chromium: install Debian's chromium package (scripts/setup.sh does, as root) or set METEORA_CHROMIUM";
    }
}
