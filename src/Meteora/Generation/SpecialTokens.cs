using Meteora.Llama;
using Meteora.Tokenization;

namespace Meteora.Generation;

/// <summary>End-of-sequence and padding ids, from the model config and the tokenizer together.</summary>
public static class SpecialTokens
{
    /// <summary>Every id that ends a sequence: the config's eos_token_id(s) and the tokenizer's EOS.</summary>
    public static int[] EosIds(LlamaConfig config, HfTokenizer tokenizer) =>
        config.EosTokenIds.Concat(tokenizer.EosId is { } e ? [e] : Array.Empty<int>()).Distinct().ToArray();

    /// <summary>The EOS appended to training responses: the tokenizer's, else the config's first.</summary>
    public static int? TrainingEos(LlamaConfig config, HfTokenizer tokenizer) =>
        tokenizer.EosId ?? (config.EosTokenIds.Length > 0 ? config.EosTokenIds[0] : null);

    /// <summary>Padding id: the config's pad_token_id, else EOS, else 0 (padding is masked or ignored anyway).</summary>
    public static int PadId(LlamaConfig config, int? eos = null) =>
        config.PadTokenId ?? eos ?? (config.EosTokenIds.Length > 0 ? config.EosTokenIds[0] : 0);
}
