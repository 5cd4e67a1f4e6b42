using System.Text.Json;
using Meteora.IO;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Meteora.Llama;

namespace Meteora.Lora;

/// <summary>
/// A PEFT <c>adapter_config.json</c> for LoRA: rank, alpha (scale alpha/r, or alpha/√r with rsLoRA), target
/// modules (a list of names, <c>"all-linear"</c>, or a regular expression over module paths), the layers
/// it covers and the dropout used in training. Features that change the arithmetic (DoRA, biases, fan-in-fan-out
/// storage, per-module rank patterns, extra saved modules) are refused with a clear message.
/// </summary>
public sealed record LoraConfig
{
    public int R { get; init; } = 8;
    public double LoraAlpha { get; init; } = 16;
    public bool UseRsLora { get; init; }
    /// <summary>Projection names ("q_proj", …) the adapter targets, when given as a list or "all-linear".</summary>
    public IReadOnlyList<string> TargetModules { get; init; } = ProjectionSite.AllNames;
    /// <summary>A PEFT regex target (full match over module paths); null when <see cref="TargetModules"/> applies.</summary>
    public string? TargetRegex { get; init; }
    /// <summary>Layer indices the adapter covers; null = all layers.</summary>
    public IReadOnlyList<int>? LayersToTransform { get; init; }
    public double LoraDropout { get; init; }
    public string? BaseModelNameOrPath { get; init; }

    /// <summary>The factor on B·A: alpha / r, or alpha / √r with rsLoRA.</summary>
    public double Scale => UseRsLora ? LoraAlpha / Math.Sqrt(R) : LoraAlpha / R;

    /// <summary>Whether the adapter's config covers the projection at <paramref name="site"/>.</summary>
    public bool Targets(ProjectionSite site)
    {
        if (LayersToTransform is { } layers && !layers.Contains(site.Layer)) return false;
        if (TargetRegex is { } regex) return Regex.IsMatch(site.Key, $"^(?:{regex})$");
        return TargetModules.Contains(site.Name);
    }

    /// <summary>Reads <c>adapter_config.json</c> in <paramref name="folder"/>.</summary>
    public static LoraConfig Load(string folder)
    {
        string path = Path.Combine(folder, "adapter_config.json");
        if (!Directory.Exists(folder)) throw new MeteoraException($"{folder}: adapter folder not found");
        if (!File.Exists(path)) throw new MeteoraException($"{path}: file not found (not a PEFT adapter folder?)");
        JsonObject o;
        try { o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new MeteoraException($"{path}: not a JSON object"); }
        catch (JsonException e) { throw new MeteoraException($"{path}: invalid JSON ({e.Message.Split('\n')[0]})"); }
        return Parse(o, path);
    }

    public static LoraConfig Parse(JsonObject o, string path)
    {
        string peftType = JsonFields.Str(o, "peft_type", path) ?? "LORA";
        if (peftType != "LORA") throw new MeteoraException($"{path}: peft_type '{peftType}' is not LORA");
        string bias = JsonFields.Str(o, "bias", path) ?? "none";
        if (bias != "none") throw new MeteoraException($"{path}: bias '{bias}' is not supported (only \"none\")");
        if (JsonFields.Bool(o, "use_dora", path) == true)
            throw new MeteoraException($"{path}: use_dora = true (DoRA) is not supported");
        if (JsonFields.Bool(o, "fan_in_fan_out", path) == true)
            throw new MeteoraException($"{path}: fan_in_fan_out = true is not supported (LLaMA projections are nn.Linear)");
        foreach (var key in new[] { "rank_pattern", "alpha_pattern" })
            if (o[key] is JsonObject pattern && pattern.Count > 0)
                throw new MeteoraException($"{path}: {key} is not supported (one rank and alpha per adapter)");
        if (o["modules_to_save"] is JsonArray saved && saved.Count > 0)
            throw new MeteoraException($"{path}: modules_to_save is not supported (the adapter must hold LoRA weights only)");

        int r = JsonFields.Int(o, "r", path, min: 1) ?? 8;
        double alpha = JsonFields.Double(o, "lora_alpha", path, positive: true) ?? 8;
        double dropout = JsonFields.Double(o, "lora_dropout", path, nonNegative: true) ?? 0;
        if (dropout >= 1) throw new MeteoraException($"{path}: 'lora_dropout' must be below 1, not {dropout}");
        var (targets, regex) = ParseTargets(o["target_modules"], path);
        return new LoraConfig
        {
            R = r,
            LoraAlpha = alpha,
            UseRsLora = JsonFields.Bool(o, "use_rslora", path) ?? false,
            TargetModules = targets,
            TargetRegex = regex,
            LayersToTransform = JsonFields.IntList(o, "layers_to_transform", path, "a layer index or a list of them"),
            LoraDropout = dropout,
            BaseModelNameOrPath = JsonFields.Str(o, "base_model_name_or_path", path),
        };
    }

    private static (IReadOnlyList<string>, string?) ParseTargets(JsonNode? node, string path)
    {
        switch (node)
        {
            case null:
                throw new MeteoraException($"{path}: target_modules is missing");
            case JsonValue v when v.TryGetValue(out string? s) && s == "all-linear":
                return (ProjectionSite.AllNames, null);
            case JsonValue v when v.TryGetValue(out string? s):
                if (!IsValidRegex(s!)) throw new MeteoraException($"{path}: target_modules '{s}' is not a valid regular expression");
                return (ProjectionSite.AllNames.Where(n => Regex.IsMatch(n, s!)).ToArray(), s);
            case JsonArray a:
                var names = a.Select(x => x is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>()
                    : throw new MeteoraException($"{path}: 'target_modules' must be a list of module names or a string, not {a.ToJsonString()}")).ToArray();
                foreach (var n in names)
                    if (!ProjectionSite.AllNames.Contains(n))
                        throw new MeteoraException($"{path}: target module '{n}' is not a LLaMA projection ({string.Join(", ", ProjectionSite.AllNames)})");
                return (names, null);
            default:
                throw new MeteoraException($"{path}: 'target_modules' must be a list of module names or a string, not {node.ToJsonString()}");
        }
    }

    /// <summary>Whether <paramref name="pattern"/> parses as a .NET regular expression (PEFT's target_modules string).</summary>
    public static bool IsValidRegex(string pattern)
    {
        try { _ = new Regex(pattern); return true; }
        catch (ArgumentException) { return false; }
    }


    /// <summary>The PEFT-compatible <c>adapter_config.json</c> text for this config.</summary>
    public string ToPeftJson() => new JsonObject
    {
        ["peft_type"] = "LORA",
        ["task_type"] = "CAUSAL_LM",
        ["base_model_name_or_path"] = BaseModelNameOrPath,
        ["r"] = R,
        ["lora_alpha"] = LoraAlpha,
        ["lora_dropout"] = LoraDropout,
        ["target_modules"] = TargetRegex is { } rx ? JsonValue.Create(rx) : new JsonArray(TargetModules.Select(t => (JsonNode)JsonValue.Create(t)!).ToArray()),
        ["bias"] = "none",
        ["use_rslora"] = UseRsLora,
        ["use_dora"] = false,
        ["fan_in_fan_out"] = false,
        ["inference_mode"] = true,
        ["init_lora_weights"] = true,
        ["layers_to_transform"] = LayersToTransform is { } l ? new JsonArray(l.Select(i => (JsonNode)JsonValue.Create(i)).ToArray()) : null,
        ["layers_pattern"] = null,
        ["rank_pattern"] = new JsonObject(),
        ["alpha_pattern"] = new JsonObject(),
        ["modules_to_save"] = null,
        ["revision"] = null,
    }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
}
