using Meteora.Tokenization;

namespace Meteora.Generation;

/// <summary>
/// Turns a growing list of generated ids into text increments. Decodes prompt + new tokens as a whole (so
/// Metaspace tokenizers keep their leading spaces) and holds back text while it ends in an incomplete UTF-8
/// sequence (U+FFFD).
/// </summary>
public sealed class StreamingDetokenizer
{
    private readonly HfTokenizer _tokenizer;
    private readonly List<int> _ids;
    private readonly int _promptChars;
    private int _emitted;

    public StreamingDetokenizer(HfTokenizer tokenizer, IEnumerable<int> promptIds)
    {
        _tokenizer = tokenizer;
        _ids = promptIds.ToList();
        _promptChars = tokenizer.Decode(_ids).Length;
    }

    /// <summary>Adds one token; returns the text that became final (possibly empty).</summary>
    public string Add(int id)
    {
        _ids.Add(id);
        string full = _tokenizer.Decode(_ids);
        if (full.EndsWith('\uFFFD') || full.Length < _promptChars + _emitted) return "";
        string piece = full[(_promptChars + _emitted)..];
        _emitted += piece.Length;
        return piece;
    }

    /// <summary>Text still held back at the end of generation (an incomplete sequence, shown as U+FFFD).</summary>
    public string Flush()
    {
        string full = _tokenizer.Decode(_ids);
        if (full.Length <= _promptChars + _emitted) return "";
        string piece = full[(_promptChars + _emitted)..];
        _emitted += piece.Length;
        return piece;
    }
}
