using System.Text.Json;
using Meteora.IO;
using System.Text.Json.Nodes;

namespace Meteora.Llama;

/// <summary>
/// The architecture of a LLaMA-family model, read from a Hugging Face <c>config.json</c>. Accepts both the Hub
/// form (<c>rope_theta</c> + <c>rope_scaling</c>) and the transformers-5 form (<c>rope_parameters</c>).
/// </summary>
public sealed record LlamaConfig
{
    public int HiddenSize { get; init; }
    public int IntermediateSize { get; init; }
    public int NumHiddenLayers { get; init; }
    public int NumAttentionHeads { get; init; }
    public int NumKeyValueHeads { get; init; }
    public int HeadDim { get; init; }
    public int VocabSize { get; init; }
    public double RmsNormEps { get; init; } = 1e-6;
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public bool TieWordEmbeddings { get; init; }
    public RopeParameters Rope { get; init; } = new(10000.0);
    public int? BosTokenId { get; init; }
    public int[] EosTokenIds { get; init; } = [];
    public int? PadTokenId { get; init; }
    /// <summary>dtype the checkpoint was saved in ("float32", "bfloat16", …), when the config says.</summary>
    public string? TorchDtype { get; init; }

    /// <summary>Query heads per key/value head (grouped-query attention).</summary>
    public int KvGroups => NumAttentionHeads / NumKeyValueHeads;

    /// <summary>Reads and validates <c>config.json</c> in <paramref name="folder"/>.</summary>
    public static LlamaConfig Load(string folder)
    {
        string path = Path.Combine(folder, "config.json");
        if (!Directory.Exists(folder)) throw new MeteoraException($"{folder}: model folder not found");
        if (!File.Exists(path)) throw new MeteoraException($"{path}: file not found");
        JsonObject root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path)) as JsonObject
                   ?? throw new MeteoraException($"{path}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new MeteoraException($"{path}: invalid JSON ({e.Message.Split('\n')[0]})");
        }
        return Parse(root, path);
    }

    /// <summary>Parses a config object; <paramref name="path"/> names the source in error messages.</summary>
    public static LlamaConfig Parse(JsonObject root, string path)
    {
        string modelType = JsonFields.Str(root, "model_type", path) ?? "";
        if (modelType != "llama")
            throw new MeteoraException($"{path}: unsupported model_type '{modelType}' (supported: llama)");
        if (JsonFields.Bool(root, "attention_bias", path) == true || JsonFields.Bool(root, "mlp_bias", path) == true)
            throw new MeteoraException($"{path}: attention_bias/mlp_bias = true is not supported");
        string act = JsonFields.Str(root, "hidden_act", path) ?? "silu";
        if (act != "silu") throw new MeteoraException($"{path}: unsupported hidden_act '{act}' (supported: silu)");

        int hidden = JsonFields.RequiredInt(root, "hidden_size", path);
        int heads = JsonFields.RequiredInt(root, "num_attention_heads", path);
        int kvHeads = JsonFields.Int(root, "num_key_value_heads", path, min: 1) ?? heads;
        int headDim = JsonFields.Int(root, "head_dim", path, min: 1) ?? (heads > 0 ? hidden / heads : 0);
        var config = new LlamaConfig
        {
            HiddenSize = hidden,
            IntermediateSize = JsonFields.RequiredInt(root, "intermediate_size", path),
            NumHiddenLayers = JsonFields.RequiredInt(root, "num_hidden_layers", path),
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim,
            VocabSize = JsonFields.RequiredInt(root, "vocab_size", path),
            RmsNormEps = JsonFields.Double(root, "rms_norm_eps", path, positive: true) ?? 1e-6,
            MaxPositionEmbeddings = JsonFields.Int(root, "max_position_embeddings", path, min: 1) ?? 2048,
            TieWordEmbeddings = JsonFields.Bool(root, "tie_word_embeddings", path) ?? false,
            Rope = ParseRope(root, path),
            BosTokenId = JsonFields.Int(root, "bos_token_id", path),
            EosTokenIds = JsonFields.IntList(root, "eos_token_id", path, "a token id or a list of token ids") ?? [],
            PadTokenId = JsonFields.Int(root, "pad_token_id", path),
            TorchDtype = JsonFields.Str(root, "dtype", path) ?? JsonFields.Str(root, "torch_dtype", path),
        };
        config.Validate(path);
        return config;
    }

    private void Validate(string path)
    {
        if (HiddenSize <= 0 || IntermediateSize <= 0 || NumHiddenLayers <= 0 || NumAttentionHeads <= 0
            || NumKeyValueHeads <= 0 || HeadDim <= 0 || VocabSize <= 0)
            throw new MeteoraException($"{path}: sizes must be positive");
        if (NumAttentionHeads % NumKeyValueHeads != 0)
            throw new MeteoraException($"{path}: num_attention_heads {NumAttentionHeads} is not a multiple of num_key_value_heads {NumKeyValueHeads}");
        if (HeadDim % 2 != 0) throw new MeteoraException($"{path}: head_dim {HeadDim} must be even for rotary embeddings");
    }

    private static RopeParameters ParseRope(JsonObject root, string path)
    {
        // transformers 5: rope_parameters holds theta and type; Hub form: rope_theta + optional rope_scaling.
        JsonObject? p = JsonFields.Obj(root, "rope_parameters", path);
        JsonObject? scaling = p ?? JsonFields.Obj(root, "rope_scaling", path);
        double theta = (p != null ? JsonFields.Double(p, "rope_theta", path, positive: true) : null) ?? JsonFields.Double(root, "rope_theta", path, positive: true) ?? 10000.0;
        string type = scaling == null ? "default" : JsonFields.Str(scaling, "rope_type", path) ?? JsonFields.Str(scaling, "type", path) ?? "default";
        switch (type)
        {
            case "default":
                return new RopeParameters(theta);
            case "llama3":
                return new RopeParameters(theta, "llama3",
                    JsonFields.Double(scaling!, "factor", path, positive: true) ?? throw new MeteoraException($"{path}: llama3 rope scaling needs 'factor'"),
                    JsonFields.Double(scaling!, "low_freq_factor", path, positive: true) ?? 1.0,
                    JsonFields.Double(scaling!, "high_freq_factor", path, positive: true) ?? 4.0,
                    JsonFields.Int(scaling!, "original_max_position_embeddings", path, min: 1) ?? 8192);
            default:
                throw new MeteoraException($"{path}: unsupported rope_type '{type}' (supported: default, llama3)");
        }
    }

    /// <summary>This config as a Hugging Face <c>config.json</c> (transformers-5 form: rope in <c>rope_parameters</c>).</summary>
    public string ToJson(string dtype = "float32")
    {
        var rope = new JsonObject { ["rope_theta"] = Rope.Theta, ["rope_type"] = Rope.RopeType };
        if (Rope.RopeType == "llama3")
        {
            rope["factor"] = Rope.Factor;
            rope["low_freq_factor"] = Rope.LowFreqFactor;
            rope["high_freq_factor"] = Rope.HighFreqFactor;
            rope["original_max_position_embeddings"] = Rope.OriginalMaxPositionEmbeddings;
        }
        return new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["attention_bias"] = false,
            ["attention_dropout"] = 0.0,
            ["mlp_bias"] = false,
            ["hidden_act"] = "silu",
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["head_dim"] = HeadDim,
            ["vocab_size"] = VocabSize,
            ["rms_norm_eps"] = RmsNormEps,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["rope_parameters"] = rope,
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenIds.Length == 1 ? JsonValue.Create(EosTokenIds[0]) : new JsonArray(EosTokenIds.Select(i => (JsonNode)JsonValue.Create(i)).ToArray()),
            ["pad_token_id"] = PadTokenId,
            ["dtype"] = dtype,
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

}
