using System.CommandLine;
using System.Text.RegularExpressions;
using Meteora.Cli;

namespace Meteora.Tests.Cli;

/// <summary>
/// The device scripts (bench/) run only on the lent GPU machines, where a mistyped option costs a device call:
/// every `$M command … --option` they hold must name a command and options the CLI has. Variables assigned a
/// literal in the script ("GATE=\"train-gate …\"") are expanded; words that still hold a `$` are skipped.
/// </summary>
public class DeviceScriptOptionsTests
{
    private static readonly RootCommand Root = CliApp.Build(TextWriter.Null, TextWriter.Null);

    /// <summary>Problems in one script's text: "command --option" that the CLI does not have.</summary>
    internal static List<string> Problems(string script)
    {
        var lines = script.Replace("\\\n", " ").Split('\n');
        var vars = new Dictionary<string, string>();
        var assign = new Regex(@"^\s*(?:export\s+)?([A-Z][A-Z0-9_]*)=(?:\$\{\1:-)?""([^""]*)""\}?\s*$");
        foreach (var line in lines)
            if (assign.Match(line) is { Success: true } m) vars[m.Groups[1].Value] = m.Groups[2].Value;
        string Expand(string text) => Regex.Replace(text, @"\$\{([A-Z][A-Z0-9_]*)(?:/[^}]*)?\}|\$([A-Z][A-Z0-9_]*)",
            m => vars.TryGetValue(m.Groups[1].Success && m.Groups[1].Value != "" ? m.Groups[1].Value : m.Groups[2].Value, out var v) ? v : m.Value);

        var problems = new List<string>();
        foreach (var line in lines)
        {
            int at = line.IndexOf("$M ", StringComparison.Ordinal);
            if (at < 0 || line.TrimStart().StartsWith('#')) continue;
            string rest = Expand(Expand(line[(at + 3)..]));
            rest = Regex.Split(rest, @"\s(?:\d?>|\||&&|;|&)")[0];                     // up to a redirection or the next command
            var words = rest.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(w => w.Trim('"', '\'')).ToList();
            Command command = Root;
            int i = 0;
            while (i < words.Count && command.Subcommands.FirstOrDefault(c => c.Name == words[i]) is { } sub) { command = sub; i++; }
            if (command == Root) { if (i < words.Count && !words[i].Contains('$')) problems.Add($"'{words[i]}' is not a command"); continue; }
            var known = command.Options.Concat(Root.Options).SelectMany(o => o.Aliases.Append(o.Name)).ToHashSet();
            foreach (var w in words.Skip(i).Where(w => w.StartsWith("--") && !w.Contains('$')))
            {
                string option = w.Split('=')[0];
                if (!known.Contains(option) && option != "--help") problems.Add($"{command.Name} {option}");
            }
        }
        return problems;
    }

    [Fact]
    public void TheCheckFindsAMistypedOptionAndAnUnknownCommand()
    {
        string script = "GATE=\"train-gate --model $F/base --steps 10\"\n" +
                        "$M $GATE --output /tmp/x > log 2>&1\n" +
                        "$M bench train-lora --rank 8 --json out.json\n" +
                        "$M trian-gate --steps 3\n";
        Assert.Equal(["train-gate --output", "'trian-gate' is not a command"], Problems(script));
    }

    [Fact]
    public void EveryDeviceScriptUsesOptionsTheCliHas()
    {
        var scripts = Directory.GetFiles(Path.Combine(Fixture.RepoRoot, "bench"), "*.sh", SearchOption.AllDirectories);
        Assert.NotEmpty(scripts);
        var problems = scripts.SelectMany(f => Problems(File.ReadAllText(f)).Select(p => $"{Path.GetRelativePath(Fixture.RepoRoot, f)}: {p}")).ToList();
        Assert.True(problems.Count == 0, string.Join("\n", problems));
        // The check reaches the real scripts' invocations (through their variables): the slip it exists for is found.
        string distributed = File.ReadAllText(Path.Combine(Fixture.RepoRoot, "bench", "device-distributed.sh"));
        Assert.Contains("train-gate --output", Problems(distributed.Replace("--out /tmp", "--output /tmp")));
        string demo = File.ReadAllText(Path.Combine(Fixture.RepoRoot, "bench", "device-demo.sh"));
        Assert.Contains("demo --from-scrach", Problems(demo.Replace("--from-scratch", "--from-scrach")));
    }
}
