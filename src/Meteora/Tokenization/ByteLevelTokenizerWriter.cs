using System.Text.Json;
using System.Text.Json.Nodes;
using Meteora.IO;

namespace Meteora.Tokenization;

/// <summary>
/// Writes a byte-level tokenizer (GPT-2 byte alphabet, BPE with no merges: one token per byte) as a Hugging Face
/// <c>tokenizer.json</c> with three special tokens — BOS (id 0, prepended by the post-processor), EOS (1) and
/// PAD (2) — and the 256 byte tokens at ids 3…258. Character-level tokens suit the built-in tasks, which
/// manipulate letters and digits.
/// </summary>
internal static class ByteLevelTokenizerWriter
{
    public const string Bos = "<|begin_of_text|>", Eos = "<|end_of_text|>", Pad = "<|pad|>";
    public const int SpecialCount = 3;
    public const int VocabSize = SpecialCount + 256;

    /// <summary>
    /// The byte → printable character table of byte-level BPE: printable Latin-1 bytes map to themselves, the
    /// rest to U+0100 onwards, in byte order.
    /// </summary>
    public static char[] ByteAlphabet()
    {
        var table = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            table[b] = printable ? (char)b : (char)next++;
        }
        return table;
    }

    /// <summary>Writes tokenizer.json and tokenizer_config.json into <paramref name="folder"/>.</summary>
    public static void Write(string folder)
    {
        Directory.CreateDirectory(folder);
        var vocab = new JsonObject();
        var alphabet = ByteAlphabet();
        for (int b = 0; b < 256; b++) vocab[alphabet[b].ToString()] = SpecialCount + b;
        JsonObject Special(int id, string content) => new()
        {
            ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
            ["normalized"] = false, ["special"] = true,
        };
        JsonObject ByteLevel() => new() { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(Special(0, Bos), Special(1, Eos), Special(2, Pad)),
            ["normalizer"] = null,
            ["pre_tokenizer"] = ByteLevel(),
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = Bos, ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                ["pair"] = new JsonArray(
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = Bos, ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "B", ["type_id"] = 1 } }),
                ["special_tokens"] = new JsonObject
                {
                    [Bos] = new JsonObject { ["id"] = Bos, ["ids"] = new JsonArray(0), ["tokens"] = new JsonArray(Bos) },
                },
            },
            ["decoder"] = ByteLevel(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = vocab, ["merges"] = new JsonArray(),
            },
        };
        var options = new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        AtomicFile.WriteAllText(Path.Combine(folder, "tokenizer.json"), root.ToJsonString(options));
        AtomicFile.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), new JsonObject
        {
            ["bos_token"] = Bos, ["eos_token"] = Eos, ["pad_token"] = Pad, ["tokenizer_class"] = "PreTrainedTokenizerFast",
        }.ToJsonString(options));
    }
}
