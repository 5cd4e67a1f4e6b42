using Meteora.Generation;
using Meteora.Tokenization;

namespace Meteora.Serving;

/// <summary>
/// A sequence's generated text as it grows, with OpenAI's stop strings: text is released only once it can no
/// longer be the start of a stop string, and a stop string ends the text before it. Built on
/// <see cref="StreamingDetokenizer"/> (which holds back incomplete UTF-8).
/// </summary>
public sealed class OutputText
{
    private readonly StreamingDetokenizer _detokenizer;
    private readonly IReadOnlyList<string> _stop;
    private readonly System.Text.StringBuilder _text = new();
    private int _released;

    public OutputText(HfTokenizer tokenizer, IEnumerable<int> promptIds, IReadOnlyList<string> stop)
    {
        _detokenizer = new StreamingDetokenizer(tokenizer, promptIds);
        _stop = stop;
    }

    /// <summary>Characters released so far (the offset of the next piece).</summary>
    public int Released => _released;

    /// <summary>Whether a stop string was found (the sequence is over).</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds a token; returns the text released by it (possibly empty).</summary>
    public string Add(int id)
    {
        if (Stopped) return "";
        _text.Append(_detokenizer.Add(id));
        return Release(final: false);
    }

    /// <summary>At the end of the sequence: the text still held back (none after a stop string).</summary>
    public string Flush()
    {
        if (Stopped) return "";
        _text.Append(_detokenizer.Flush());
        return Release(final: true);
    }

    private string Release(bool final)
    {
        string text = _text.ToString();
        int end = text.Length;
        if (_stop.Count > 0)
        {
            // Search from where a stop string could start that was not complete before.
            int from = Math.Max(0, _released - _stop.Max(s => s.Length) + 1);
            int found = _stop.Select(s => text.IndexOf(s, from, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
            if (found >= 0)
            {
                Stopped = true;
                end = Math.Max(found, _released);
            }
            else if (!final)
                end = text.Length - LongestPartialStop(text);
        }
        if (end <= _released) return "";
        string piece = text[_released..end];
        _released = end;
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
