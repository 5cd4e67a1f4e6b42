using Meteora.Generation;
using Meteora.Tokenization;

namespace Meteora.Serving;

/// <summary>
/// A sequence's generated text as it grows, with OpenAI's stop strings: text is released only once it can no
/// longer be the start of a stop string, and a stop string ends the text before it. Built on
/// <see cref="StreamingDetokenizer"/> (which holds back incomplete UTF-8).
/// </summary>
internal sealed class OutputText
{
    private readonly StreamingDetokenizer _detokenizer;
    private readonly IReadOnlyList<string> _stop;
    private readonly int _keep;        // released characters kept for matching: the longest stop string − 1
    private string _seen = "";         // the last _keep released characters
    private string _pending = "";      // text not released yet (held back, or not yet checked)
    private int _released;

    public OutputText(HfTokenizer tokenizer, IEnumerable<int> promptIds, IReadOnlyList<string> stop)
    {
        _detokenizer = new StreamingDetokenizer(tokenizer, promptIds);
        _stop = stop;
        _keep = stop.Count == 0 ? 0 : stop.Max(x => x.Length) - 1;
    }

    /// <summary>Characters released so far (the offset of the next piece).</summary>
    public int Released => _released;

    /// <summary>Whether a stop string was found (the sequence is over).</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds a token; returns the text released by it (possibly empty).</summary>
    public string Add(int id)
    {
        if (Stopped) return "";
        _pending += _detokenizer.Add(id);
        return Release(final: false);
    }

    /// <summary>At the end of the sequence: the text still held back (none after a stop string).</summary>
    public string Flush()
    {
        if (Stopped) return "";
        _pending += _detokenizer.Flush();
        return Release(final: true);
    }

    /// <summary>
    /// Releases what can no longer be part of a stop string. Only a window is searched — the last released
    /// characters that a stop string could still start in, and the pending text — so a token's cost does not grow
    /// with the length of the output.
    /// </summary>
    private string Release(bool final)
    {
        int end = _pending.Length;                                     // release _pending[..end]
        if (_stop.Count > 0)
        {
            string window = _seen + _pending;
            int found = _stop.Select(s => window.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
            if (found >= 0)
            {
                Stopped = true;
                end = Math.Max(found - _seen.Length, 0);
            }
            else if (!final)
                end = Math.Max(_pending.Length - LongestPartialStop(window), 0);
        }
        if (end == 0) return "";
        string piece = _pending[..end];
        _pending = _pending[end..];
        _released += end;
        _seen = _keep == 0 ? "" : (_seen + piece)[Math.Max(0, _seen.Length + piece.Length - _keep)..];
        return piece;
    }

    /// <summary>Length of the longest suffix of <paramref name="text"/> that is a proper prefix of a stop string.</summary>
    private int LongestPartialStop(string text)
    {
        int best = 0;
        foreach (var s in _stop)
            for (int n = Math.Min(s.Length - 1, text.Length); n > best; n--)
                if (string.CompareOrdinal(text, text.Length - n, s, 0, n) == 0) { best = n; break; }
        return best;
    }
}
