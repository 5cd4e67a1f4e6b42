using Meteora.Tokenization;

namespace Meteora.Generation;

/// <summary>
/// Turns a growing list of generated ids into text increments, at a cost per token that does not grow with the
/// sequence (vLLM's incremental detokenisation): it decodes a short window — a few ids before the ones not yet
/// shown, for context (Metaspace tokenizers need it for their leading spaces), plus those — and emits what the new
/// ids add to the context's text. Text is held back while it ends in an incomplete UTF-8 sequence (U+FFFD).
/// </summary>
public sealed class StreamingDetokenizer
{
    /// <summary>Ids of context decoded before the unread ones.</summary>
    private const int Context = 6;

    private readonly HfTokenizer _tokenizer;
    private readonly List<int> _ids;
    private int _prefix;   // window start: context ids from here
    private int _read;     // ids before this are shown

    public StreamingDetokenizer(HfTokenizer tokenizer, IEnumerable<int> promptIds)
    {
        _tokenizer = tokenizer;
        _ids = promptIds.ToList();
        _read = _ids.Count;
        _prefix = Math.Max(0, _read - Context);
    }

    /// <summary>Adds one token; returns the text that became final (possibly empty).</summary>
    public string Add(int id)
    {
        _ids.Add(id);
        return Next(final: false);
    }

    /// <summary>Text still held back at the end of generation (an incomplete sequence, shown as U+FFFD).</summary>
    public string Flush() => Next(final: true);

    private string Next(bool final)
    {
        if (_read >= _ids.Count) return "";
        string context = _tokenizer.Decode(_ids.GetRange(_prefix, _read - _prefix));
        string full = _tokenizer.Decode(_ids.GetRange(_prefix, _ids.Count - _prefix));
        if (!final && (full.EndsWith('\uFFFD') || full.Length <= context.Length)) return "";
        // The new ids' text: what they add after the context's text (the context decodes the same inside the window).
        string piece = full.StartsWith(context, StringComparison.Ordinal) ? full[context.Length..] : full[Math.Min(context.Length, full.Length)..];
        _prefix = Math.Max(_prefix, _ids.Count - Context);
        _read = _ids.Count;
        return piece;
    }
}
