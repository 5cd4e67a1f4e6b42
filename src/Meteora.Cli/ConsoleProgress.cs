using Meteora.Training;

namespace Meteora.Cli;

/// <summary>
/// Training progress on stderr: a single self-updating bar line on a terminal, or a plain line every ~5% of the
/// run (and at every evaluation) when stderr is redirected to a file or pipe.
/// </summary>
public sealed class ConsoleProgress : ITrainingProgress
{
    private readonly TextWriter _err;
    private readonly bool _interactive;
    private readonly string[] _shown;
    private int _every = 1;
    private bool _lineOpen;

    /// <param name="shown">metric names shown on the bar, in order (others go only to metrics.jsonl)</param>
    public ConsoleProgress(TextWriter err, bool interactive, params string[] shown)
    {
        _err = err; _interactive = interactive; _shown = shown;
    }

    public void Start(int totalSteps, int startStep) => _every = Math.Max(1, totalSteps / 20);

    public void Step(int step, int totalSteps, IReadOnlyDictionary<string, double> metrics, double tokensPerSecond, TimeSpan eta)
    {
        if (!_interactive && step % _every != 0 && step != totalSteps) return;
        const int width = 24;
        int filled = (int)Math.Round(width * step / (double)totalSteps);
        var parts = _shown.Where(metrics.ContainsKey).Select(k => $"{k} {Format(metrics[k])}");
        string line = $"step {step}/{totalSteps} [{new string('#', filled)}{new string('.', width - filled)}] " +
                      string.Join(" | ", parts.Append(Throughput(metrics, tokensPerSecond)).Append($"ETA {eta:hh\\:mm\\:ss}"));
        if (_interactive) { _err.Write("\r" + line.PadRight(120)); _lineOpen = true; }
        else _err.WriteLine(line);
        _err.Flush();
    }

    public void Evaluation(int step, IReadOnlyDictionary<string, double> metrics)
    {
        CloseLine();
        _err.WriteLine($"eval @ step {step}: " + string.Join(" | ", metrics.Select(kv => $"{kv.Key} {Format(kv.Value)}")));
    }

    public void Message(string text)
    {
        CloseLine();
        _err.WriteLine(text);
    }

    public void Stop() => CloseLine();

    private void CloseLine()
    {
        if (_lineOpen) _err.WriteLine();
        _lineOpen = false;
    }

    /// <summary>Total tokens/s, and one GPU's in data-parallel training (the loop's rank_tokens_per_s).</summary>
    private static string Throughput(IReadOnlyDictionary<string, double> metrics, double total) =>
        metrics.TryGetValue("rank_tokens_per_s", out double rank) ? $"{total:N0} tok/s ({rank:N0} per GPU)" : $"{total:N0} tok/s";

    private static string Format(double v) => Math.Abs(v) is > 0 and < 1e-3 ? v.ToString("0.00e+0") : v.ToString("0.0000");
}
