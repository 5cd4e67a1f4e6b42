using Meteora.Cli;

namespace Meteora.Tests;

/// <summary>Runs the CLI in-process and captures its exit code and streams.</summary>
public static class CliRunner
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Result Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = CliApp.Run(args, stdout, stderr);
        return new Result(code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Asserts a user error: exit code 1 and one line on stderr that contains every <paramref name="fragments"/>.</summary>
    public static void AssertUserError(Result r, params string[] fragments)
    {
        Assert.Equal(1, r.ExitCode);
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one line on stderr, got: {r.Stderr}");
        foreach (var f in fragments) Assert.Contains(f, lines[0]);
    }
}
