using System.Text.Json.Nodes;
using Meteora.IO;

namespace Meteora.Tokenization;

/// <summary>
/// Writes a Hugging Face <c>tokenizer.json</c> whose every id is a word of its own (<c>w0</c>, <c>w1</c>, …; a
/// WordLevel model, words joined by spaces on decoding), for models with random weights (benchmarks): every
/// generated token then has text, as with a real vocabulary, whatever its id.
/// </summary>
public static class WordLevelTokenizerWriter
{
    /// <summary>Writes tokenizer.json for <paramref name="vocabSize"/> ids into <paramref name="folder"/>.</summary>
    public static void Write(string folder, int vocabSize)
    {
        if (vocabSize < 2) throw new MeteoraException($"a word-level tokenizer needs at least 2 ids, not {vocabSize}");
        Directory.CreateDirectory(folder);
        var vocab = new JsonObject();
        for (int i = 0; i < vocabSize; i++) vocab[$"w{i}"] = i;
        var root = new JsonObject
        {
            ["version"] = "1.0", ["truncation"] = null, ["padding"] = null, ["added_tokens"] = new JsonArray(),
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject { ["type"] = "WhitespaceSplit" },
            ["post_processor"] = null,
            ["decoder"] = null,
            ["model"] = new JsonObject { ["type"] = "WordLevel", ["vocab"] = vocab, ["unk_token"] = "w0" },
        };
        AtomicFile.WriteAllText(Path.Combine(folder, "tokenizer.json"), root.ToJsonString());
    }
}
