using System.Text.Json;
using System.Text.Json.Nodes;

namespace Meteora.Tokenization;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> (byte-level BPE as in Llama 3, Metaspace + byte-fallback BPE as in
/// Llama 2, …) run by the Rust <c>tokenizers</c> library through Tokenizers.DotNet. Encoding applies the
/// post-processor (BOS); decoding skips special tokens.
/// </summary>
public sealed class HfTokenizer : IDisposable
{
    private readonly Tokenizers.DotNet.Tokenizer _inner;
    private readonly int _leadingSpecial, _trailingSpecial;
    private readonly Lazy<Func<int, byte[]?>> _tokenBytes;
    private readonly Lazy<IReadOnlyList<int>> _leadingSpecialIds;   // the post-processor's leading specials, encoded once

    public string Path { get; }
    /// <summary>Token text → id for the added (special) tokens.</summary>
    public IReadOnlyDictionary<string, int> SpecialTokens { get; }
    public int? BosId { get; }
    public int? EosId { get; }

    private HfTokenizer(string path, Tokenizers.DotNet.Tokenizer inner, Dictionary<string, int> special,
        int leading, int trailing, int? bos, int? eos)
    {
        Path = path; _inner = inner; SpecialTokens = special;
        _leadingSpecial = leading; _trailingSpecial = trailing; BosId = bos; EosId = eos;
        _tokenBytes = new(() => TokenByteTable(path, special));
        _leadingSpecialIds = new(() => Array.AsReadOnly(_inner.Encode("").Select(i => (int)i).Take(_leadingSpecial).ToArray()));
    }

    /// <summary>Loads <c>tokenizer.json</c> (and <c>tokenizer_config.json</c> for BOS/EOS names) from a model folder.</summary>
    public static HfTokenizer Load(string folder)
    {
        string path = System.IO.Path.Combine(folder, "tokenizer.json");
        if (!File.Exists(path))
        {
            if (File.Exists(System.IO.Path.Combine(folder, "tokenizer.model")))
                throw new MeteoraException($"{path}: file not found (only a SentencePiece tokenizer.model is present; convert it to tokenizer.json with transformers)");
            throw new MeteoraException($"{path}: file not found");
        }
        JsonObject root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new MeteoraException($"{path}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new MeteoraException($"{path}: invalid JSON ({e.Message.Split('\n')[0]})");
        }
        if (root["model"] is not JsonObject) throw new MeteoraException($"{path}: no 'model' section");

        var special = new Dictionary<string, int>();
        if (root["added_tokens"] is JsonArray added)
            foreach (var t in added.OfType<JsonObject>())
                if (t["content"]?.GetValue<string>() is { } content && t["id"] is JsonValue id)
                    special[content] = id.GetValue<int>();
        var (leading, trailing) = CountTemplateSpecials(root["post_processor"]);

        var (bosName, eosName) = ReadSpecialNames(folder);
        int? bos = bosName != null && special.TryGetValue(bosName, out int b) ? b : null;
        int? eos = eosName != null && special.TryGetValue(eosName, out int eid) ? eid : null;

        Tokenizers.DotNet.Tokenizer inner;
        try { inner = new Tokenizers.DotNet.Tokenizer(path); }
        catch (Exception ex) { throw new MeteoraException($"{path}: the tokenizers library rejected it ({ex.Message.Split('\n')[0]})"); }
        return new HfTokenizer(path, inner, special, leading, trailing, bos, eos);
    }

    /// <summary>Special tokens the post-processor puts before and after a single sequence.</summary>
    private static (int Leading, int Trailing) CountTemplateSpecials(JsonNode? processor)
    {
        JsonArray? single = processor?["type"]?.GetValue<string>() switch
        {
            "TemplateProcessing" => processor["single"] as JsonArray,
            "Sequence" => (processor["processors"] as JsonArray)?.OfType<JsonObject>()
                .FirstOrDefault(p => p["type"]?.GetValue<string>() == "TemplateProcessing")?["single"] as JsonArray,
            _ => null,
        };
        if (single is null) return (0, 0);
        var isSpecial = single.Select(p => p is JsonObject o && o.ContainsKey("SpecialToken")).ToList();
        int leading = isSpecial.TakeWhile(s => s).Count();
        int trailing = isSpecial.AsEnumerable().Reverse().TakeWhile(s => s).Count();
        return (leading, trailing);
    }

    private static (string? Bos, string? Eos) ReadSpecialNames(string folder)
    {
        string path = System.IO.Path.Combine(folder, TokenizerConfig.FileName);
        if (!File.Exists(path)) return (null, null);
        var tokens = TokenizerConfig.SpecialTokens(TokenizerConfig.Read(path));
        return (tokens.GetValueOrDefault("bos_token"), tokens.GetValueOrDefault("eos_token"));
    }

    /// <summary>Token ids of <paramref name="text"/>; with <paramref name="addSpecialTokens"/> the post-processor's BOS is kept.</summary>
    public int[] Encode(string text, bool addSpecialTokens = true)
    {
        var ids = _inner.Encode(text).Select(i => (int)i).ToArray();
        if (addSpecialTokens || ids.Length < _leadingSpecial + _trailingSpecial) return ids;
        return ids[_leadingSpecial..(ids.Length - _trailingSpecial)];
    }

    /// <summary>The special tokens the post-processor puts before any text (BOS for LLaMA tokenizers; may be empty).</summary>
    public IReadOnlyList<int> LeadingSpecialIds => _leadingSpecialIds.Value;

    /// <summary>Text of <paramref name="ids"/>, special tokens skipped.</summary>
    public string Decode(IEnumerable<int> ids) => _inner.Decode(ids.Select(i => (uint)i).ToArray());

    /// <summary>
    /// The bytes that token <paramref name="id"/> stands for on its own, which may be part of a UTF-8 character
    /// (a byte-level token, a <c>&lt;0xE2&gt;</c> byte-fallback token) where <see cref="Decode"/> would give U+FFFD.
    /// Read from the vocabulary for byte-level decoders (GPT-2 byte alphabet) and for Metaspace/byte-fallback ones
    /// (▁ → space, kept also at the start); special tokens give their text; other decoders fall back to
    /// <see cref="Decode"/> of the one id.
    /// </summary>
    public byte[] TokenBytes(int id) => _tokenBytes.Value(id) ?? System.Text.Encoding.UTF8.GetBytes(Decode([id]));

    /// <summary>id → bytes from tokenizer.json's vocabulary (null where the vocabulary cannot say).</summary>
    private static Func<int, byte[]?> TokenByteTable(string path, IReadOnlyDictionary<string, int> special)
    {
        var root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject;
        var pieces = new Dictionary<int, string>();
        switch (root?["model"]?["vocab"])
        {
            case JsonObject vocab:           // BPE, WordPiece, WordLevel: piece → id
                foreach (var (piece, id) in vocab)
                    if (id is JsonValue v && v.TryGetValue(out int i)) pieces[i] = piece;
                break;
            case JsonArray vocab:            // Unigram: [piece, score] at index id
                for (int i = 0; i < vocab.Count; i++)
                    if (vocab[i] is JsonArray entry && entry.Count > 0 && entry[0] is JsonValue p && p.TryGetValue(out string? piece)) pieces[i] = piece;
                break;
        }
        var specialText = special.ToDictionary(kv => kv.Value, kv => kv.Key);
        var decoders = Flatten(root?["decoder"]).ToList();
        var types = decoders.Select(d => d["type"]?.GetValue<string>()).ToHashSet();
        bool byteFallback = types.Contains("ByteFallback") || root?["model"]?["byte_fallback"] is JsonValue bf && bf.TryGetValue(out bool b) && b;
        string? metaspace = decoders.FirstOrDefault(d => d["type"]?.GetValue<string>() == "Metaspace")?["replacement"]?.GetValue<string>()
            ?? (decoders.Any(d => d["type"]?.GetValue<string>() == "Replace" && d["pattern"]?["String"]?.GetValue<string>() == "▁") ? "▁" : null);
        Func<string, byte[]?> bytesOf;
        if (types.Contains("ByteLevel"))
        {
            var alphabet = ByteLevelTokenizerWriter.ByteAlphabet();
            var inverse = Enumerable.Range(0, 256).ToDictionary(b => alphabet[b], b => (byte)b);
            bytesOf = s =>
            {
                var bytes = new List<byte>(s.Length);
                foreach (char c in s)
                {
                    if (inverse.TryGetValue(c, out byte v)) bytes.Add(v);
                    else bytes.AddRange(System.Text.Encoding.UTF8.GetBytes(c.ToString()));
                }
                return bytes.ToArray();
            };
        }
        else if (byteFallback || metaspace != null || types.Contains("WordPiece"))
        {
            bytesOf = s =>
            {
                if (byteFallback && s.Length == 6 && s.StartsWith("<0x", StringComparison.Ordinal) && s[5] == '>'
                    && byte.TryParse(s.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte v))
                    return [v];
                if (metaspace != null) s = s.Replace(metaspace, " ");
                if (types.Contains("WordPiece") && s.StartsWith("##", StringComparison.Ordinal)) s = s[2..];
                return System.Text.Encoding.UTF8.GetBytes(s);
            };
        }
        else bytesOf = _ => null;
        return id => specialText.TryGetValue(id, out var text) ? System.Text.Encoding.UTF8.GetBytes(text)
            : pieces.TryGetValue(id, out var p) ? bytesOf(p) : null;

        static IEnumerable<JsonObject> Flatten(JsonNode? decoder) => decoder switch
        {
            JsonObject o when o["type"]?.GetValue<string>() == "Sequence" && o["decoders"] is JsonArray list => list.SelectMany(Flatten),
            JsonObject o => [o],
            _ => [],
        };
    }

    public void Dispose() => _inner.Dispose();
}
