using System.Text.Json;
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
        string modelType = Str(root, "model_type", path) ?? "";
        if (modelType != "llama")
            throw new MeteoraException($"{path}: unsupported model_type '{modelType}' (supported: llama)");
        if (Bool(root, "attention_bias", path) == true || Bool(root, "mlp_bias", path) == true)
            throw new MeteoraException($"{path}: attention_bias/mlp_bias = true is not supported");
        string act = Str(root, "hidden_act", path) ?? "silu";
        if (act != "silu") throw new MeteoraException($"{path}: unsupported hidden_act '{act}' (supported: silu)");

        int hidden = RequiredInt(root, "hidden_size", path);
        int heads = RequiredInt(root, "num_attention_heads", path);
        int kvHeads = Int(root, "num_key_value_heads", path, min: 1) ?? heads;
        int headDim = Int(root, "head_dim", path, min: 1) ?? (heads > 0 ? hidden / heads : 0);
        var config = new LlamaConfig
        {
            HiddenSize = hidden,
            IntermediateSize = RequiredInt(root, "intermediate_size", path),
            NumHiddenLayers = RequiredInt(root, "num_hidden_layers", path),
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim,
            VocabSize = RequiredInt(root, "vocab_size", path),
            RmsNormEps = Double(root, "rms_norm_eps", path, positive: true) ?? 1e-6,
            MaxPositionEmbeddings = Int(root, "max_position_embeddings", path, min: 1) ?? 2048,
            TieWordEmbeddings = Bool(root, "tie_word_embeddings", path) ?? false,
            Rope = ParseRope(root, path),
            BosTokenId = Int(root, "bos_token_id", path),
            EosTokenIds = IntList(root, "eos_token_id", path),
            PadTokenId = Int(root, "pad_token_id", path),
            TorchDtype = Str(root, "dtype", path) ?? Str(root, "torch_dtype", path),
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
        JsonObject? p = Obj(root, "rope_parameters", path);
        JsonObject? scaling = p ?? Obj(root, "rope_scaling", path);
        double theta = (p != null ? Double(p, "rope_theta", path, positive: true) : null) ?? Double(root, "rope_theta", path, positive: true) ?? 10000.0;
        string type = scaling == null ? "default" : Str(scaling, "rope_type", path) ?? Str(scaling, "type", path) ?? "default";
        switch (type)
        {
            case "default":
                return new RopeParameters(theta);
            case "llama3":
                return new RopeParameters(theta, "llama3",
                    Double(scaling!, "factor", path, positive: true) ?? throw new MeteoraException($"{path}: llama3 rope scaling needs 'factor'"),
                    Double(scaling!, "low_freq_factor", path, positive: true) ?? 1.0,
                    Double(scaling!, "high_freq_factor", path, positive: true) ?? 4.0,
                    Int(scaling!, "original_max_position_embeddings", path, min: 1) ?? 8192);
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

    // Strict readers: an absent key or JSON null keeps the documented default (Hugging Face writes null for several),
    // but a key we use holding a value of the wrong type or range is a one-line error naming the file and the key —
    // never a silent fall-back to the default (`rms_norm_eps: ""` used to give 1e-6, `head_dim: 3.5` the derived one).
    private static JsonNode? Present(JsonObject o, string key) => o[key] is { } n && n.GetValueKind() != JsonValueKind.Null ? n : null;

    private static MeteoraException Wrong(string path, string key, string expected, JsonNode node) =>
        new($"{path}: '{key}' must be {expected}, not {node.ToJsonString()}");

    private static string? Str(JsonObject o, string key, string path) => Present(o, key) switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        var n => throw Wrong(path, key, "a string", n),
    };

    private static bool? Bool(JsonObject o, string key, string path) => Present(o, key) switch
    {
        null => null,
        JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => v.GetValue<bool>(),
        var n => throw Wrong(path, key, "true or false", n),
    };

    /// <summary>A finite number, greater than 0 when <paramref name="positive"/>.</summary>
    private static double? Double(JsonObject o, string key, string path, bool positive = false) => Present(o, key) switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out double d) && double.IsFinite(d) && (!positive || d > 0) => d,
        var n => throw Wrong(path, key, positive ? "a number > 0" : "a finite number", n),
    };

    /// <summary>An integer at least <paramref name="min"/>.</summary>
    private static int? Int(JsonObject o, string key, string path, int min = 0) => Present(o, key) switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out int i) && i >= min => i,
        var n => throw Wrong(path, key, $"an integer ≥ {min}", n),
    };

    private static int[] IntList(JsonObject o, string key, string path) => Present(o, key) switch
    {
        null => [],
        JsonArray a => a.Select(x => x is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out int i) && i >= 0
            ? i : throw Wrong(path, key, "a token id or a list of token ids", a)).ToArray(),
        JsonValue v when v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out int i) && i >= 0 => [i],
        var n => throw Wrong(path, key, "a token id or a list of token ids", n),
    };

    private static JsonObject? Obj(JsonObject o, string key, string path) => Present(o, key) switch
    {
        null => null,
        JsonObject obj => obj,
        var n => throw Wrong(path, key, "an object", n),
    };

    private static int RequiredInt(JsonObject o, string key, string path) =>
        Int(o, key, path, min: 1) ?? throw new MeteoraException($"{path}: missing '{key}'");
}
