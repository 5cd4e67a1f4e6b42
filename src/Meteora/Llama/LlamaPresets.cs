namespace Meteora.Llama;

/// <summary>Architectures by name, for benchmarks and synthetic models with random weights.</summary>
public static class LlamaPresets
{
    /// <summary>Meta-Llama-3-8B (and 3.1-8B) shapes: 32 layers, hidden 4096, GQA 32/8, vocab 128256.</summary>
    public static readonly LlamaConfig Llama3_8B = new()
    {
        HiddenSize = 4096, IntermediateSize = 14336, NumHiddenLayers = 32, NumAttentionHeads = 32,
        NumKeyValueHeads = 8, HeadDim = 128, VocabSize = 128256, RmsNormEps = 1e-5, MaxPositionEmbeddings = 131072,
        Rope = new RopeParameters(500000.0, "llama3", 8.0, 1.0, 4.0, 8192), BosTokenId = 128000, EosTokenIds = [128001],
    };

    /// <summary>A small model that runs anywhere in seconds (CPU smoke runs of the benchmarks).</summary>
    public static readonly LlamaConfig Small = new()
    {
        HiddenSize = 256, IntermediateSize = 704, NumHiddenLayers = 4, NumAttentionHeads = 8,
        NumKeyValueHeads = 4, HeadDim = 32, VocabSize = 4096, RmsNormEps = 1e-5, MaxPositionEmbeddings = 4096,
        Rope = new RopeParameters(500000.0),
    };

    public static IReadOnlyDictionary<string, LlamaConfig> ByName { get; } = new Dictionary<string, LlamaConfig>
    {
        ["llama3-8b"] = Llama3_8B,
        ["small"] = Small,
    };

    /// <summary>A preset by name, or the config.json of a model folder.</summary>
    public static LlamaConfig Resolve(string nameOrFolder) =>
        ByName.TryGetValue(nameOrFolder, out var c) ? c
        : Directory.Exists(nameOrFolder) ? LlamaConfig.Load(nameOrFolder)
        : throw new MeteoraException($"--config: '{nameOrFolder}' is neither a preset ({string.Join(", ", ByName.Keys)}) nor a model folder");
}
