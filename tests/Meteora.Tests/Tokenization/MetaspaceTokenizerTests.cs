using System.Text.Json;
using Meteora.Tokenization;

namespace Meteora.Tests.Tokenization;

/// <summary>
/// A Llama 2 style tokenizer.json (Metaspace normalizer, BPE with byte fallback, BOS template) written by the
/// test; the expected ids are worked out by hand from its vocabulary and merges.
/// </summary>
public class MetaspaceTokenizerTests
{
    internal static string Write(TempDir dir)
    {
        // ids: <unk>=0 <s>=1 </s>=2, bytes <0x00>…<0xFF> = 3…258, then ▁=259 h=260 i=261 hi=262 ▁hi=263.
        var vocab = new Dictionary<string, int> { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (int b = 0; b < 256; b++) vocab[$"<0x{b:X2}>"] = 3 + b;
        vocab["▁"] = 259; vocab["h"] = 260; vocab["i"] = 261; vocab["hi"] = 262; vocab["▁hi"] = 263;
        object Special(int id, string content) => new { id, content, single_word = false, lstrip = false, rstrip = false, normalized = false, special = true };
        var json = new Dictionary<string, object?>
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new[] { Special(0, "<unk>"), Special(1, "<s>"), Special(2, "</s>") },
            ["normalizer"] = new { type = "Sequence", normalizers = new object[] { new { type = "Prepend", prepend = "▁" }, new { type = "Replace", pattern = new { String = " " }, content = "▁" } } },
            ["pre_tokenizer"] = null,
            ["post_processor"] = new
            {
                type = "TemplateProcessing",
                single = new object[] { new { SpecialToken = new { id = "<s>", type_id = 0 } }, new { Sequence = new { id = "A", type_id = 0 } } },
                pair = new object[] { new { SpecialToken = new { id = "<s>", type_id = 0 } }, new { Sequence = new { id = "A", type_id = 0 } }, new { Sequence = new { id = "B", type_id = 1 } } },
                special_tokens = new Dictionary<string, object> { ["<s>"] = new { id = "<s>", ids = new[] { 1 }, tokens = new[] { "<s>" } } },
            },
            ["decoder"] = new
            {
                type = "Sequence",
                decoders = new object[]
                {
                    new { type = "Replace", pattern = new { String = "▁" }, content = " " }, new { type = "ByteFallback" },
                    new { type = "Fuse" }, new { type = "Strip", content = " ", start = 1, stop = 0 },
                },
            },
            ["model"] = new
            {
                type = "BPE", dropout = (double?)null, unk_token = "<unk>", continuing_subword_prefix = (string?)null,
                end_of_word_suffix = (string?)null, fuse_unk = true, byte_fallback = true, ignore_merges = false,
                vocab, merges = new[] { "h i", "▁ hi" },
            },
        };
        string folder = dir["llama2-tok"];
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "tokenizer.json"), JsonSerializer.Serialize(json));
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), """{"bos_token":"<s>","eos_token":"</s>"}""");
        return folder;
    }

    [Fact]
    public void EncodesWithBosMetaspaceMergesAndByteFallback()
    {
        using var dir = Fixture.TempDir();
        using var tok = HfTokenizer.Load(Write(dir));
        Assert.Equal([1, 263], tok.Encode("hi"));
        // "hi é" → "▁hi▁é": ▁hi, ▁, then é = bytes C3 A9 → <0xC3> = 3 + 195, <0xA9> = 3 + 169.
        Assert.Equal([1, 263, 259, 198, 172], tok.Encode("hi é"));
        Assert.Equal([263, 259, 198, 172], tok.Encode("hi é", addSpecialTokens: false));
        Assert.Equal((1, 2), (tok.BosId, tok.EosId));
    }

    [Fact]
    public void DecodesBytesBackAndDropsTheLeadingSpace()
    {
        using var dir = Fixture.TempDir();
        using var tok = HfTokenizer.Load(Write(dir));
        Assert.Equal("hi é", tok.Decode([1, 263, 259, 198, 172]));
    }
}
