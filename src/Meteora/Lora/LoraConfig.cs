using System.Text.Json;
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
        string peftType = Str(o, "peft_type") ?? "LORA";
        if (peftType != "LORA") throw new MeteoraException($"{path}: peft_type '{peftType}' is not LORA");
        string bias = Str(o, "bias") ?? "none";
        if (bias != "none") throw new MeteoraException($"{path}: bias '{bias}' is not supported (only \"none\")");
        if (o["use_dora"] is JsonValue d && d.TryGetValue(out bool dora) && dora)
            throw new MeteoraException($"{path}: use_dora = true (DoRA) is not supported");
        if (o["fan_in_fan_out"] is JsonValue f && f.TryGetValue(out bool fifo) && fifo)
            throw new MeteoraException($"{path}: fan_in_fan_out = true is not supported (LLaMA projections are nn.Linear)");
        foreach (var key in new[] { "rank_pattern", "alpha_pattern" })
            if (o[key] is JsonObject pattern && pattern.Count > 0)
                throw new MeteoraException($"{path}: {key} is not supported (one rank and alpha per adapter)");
        if (o["modules_to_save"] is JsonArray saved && saved.Count > 0)
            throw new MeteoraException($"{path}: modules_to_save is not supported (the adapter must hold LoRA weights only)");

        int r = o["r"] is JsonValue rv && rv.TryGetValue(out int ri) ? ri : 8;
        if (r < 1) throw new MeteoraException($"{path}: r = {r} must be ≥ 1");
        double alpha = o["lora_alpha"] is JsonValue av && av.TryGetValue(out double ad) ? ad : 8;
        var (targets, regex) = ParseTargets(o["target_modules"], path);
        return new LoraConfig
        {
            R = r,
            LoraAlpha = alpha,
            UseRsLora = o["use_rslora"] is JsonValue rs && rs.TryGetValue(out bool rsb) && rsb,
            TargetModules = targets,
            TargetRegex = regex,
            LayersToTransform = o["layers_to_transform"] switch
            {
                JsonArray a => a.Select(x => x!.GetValue<int>()).ToArray(),
                JsonValue v when v.TryGetValue(out int one) => [one],
                _ => null,
            },
            LoraDropout = o["lora_dropout"] is JsonValue dv && dv.TryGetValue(out double dd) ? dd : 0,
            BaseModelNameOrPath = Str(o, "base_model_name_or_path"),
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
                var names = a.Select(x => x?.GetValue<string>() ?? "").ToArray();
                foreach (var n in names)
                    if (!ProjectionSite.AllNames.Contains(n))
                        throw new MeteoraException($"{path}: target module '{n}' is not a LLaMA projection ({string.Join(", ", ProjectionSite.AllNames)})");
                return (names, null);
            default:
                throw new MeteoraException($"{path}: target_modules must be a list or a string");
        }
    }

    /// <summary>Whether <paramref name="pattern"/> parses as a .NET regular expression (PEFT's target_modules string).</summary>
    public static bool IsValidRegex(string pattern)
    {
        try { _ = new Regex(pattern); return true; }
        catch (ArgumentException) { return false; }
    }

    private static string? Str(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

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
