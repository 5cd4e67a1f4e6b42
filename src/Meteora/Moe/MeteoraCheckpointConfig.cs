using System.Text.Json;
using System.Text.Json.Nodes;
using Meteora.IO;
using Meteora.Llama;

namespace Meteora.Moe;

/// <summary>One embedded adapter: its name (= task) and folder (relative to the checkpoint, absolute, or null when
/// the checkpoint's adapters.safetensors holds it).</summary>
public sealed record MeteoraAdapterRef(string Name, string? Path);

/// <summary>
/// <c>meteora_config.json</c> of a MeteoRA checkpoint folder: base model, adapters in gate-index order, the
/// projections that carry gates, and the default top-k and temperature.
/// </summary>
public sealed record MeteoraCheckpointConfig
{
    public const string FileName = "meteora_config.json";

    public string? BaseModel { get; init; }
    public required IReadOnlyList<MeteoraAdapterRef> Adapters { get; init; }
    public IReadOnlyList<string> TargetModules { get; init; } = ProjectionSite.AllNames;
    public int TopK { get; init; } = 2;
    public double Temperature { get; init; } = 1.0;

    /// <summary>Reads and validates the config of the checkpoint in <paramref name="folder"/>.</summary>
    public static MeteoraCheckpointConfig Load(string folder)
    {
        if (!Directory.Exists(folder)) throw new MeteoraException($"{folder}: MeteoRA checkpoint folder not found");
        string path = System.IO.Path.Combine(folder, FileName);
        if (!File.Exists(path)) throw new MeteoraException($"{path}: file not found (not a MeteoRA checkpoint?)");
        JsonObject o;
        try { o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new MeteoraException($"{path}: not a JSON object"); }
        catch (JsonException e) { throw new MeteoraException($"{path}: invalid JSON ({e.Message.Split('\n')[0]})"); }

        string? format = JsonFields.Str(o, "format", path);
        if (format != "meteora") throw new MeteoraException($"{path}: \"format\" must be \"meteora\"");
        int version = JsonFields.Int(o, "version", path) ?? 0;
        if (version != 1) throw new MeteoraException($"{path}: unsupported version {version} (this build reads version 1)");
        if (o["adapters"] is not JsonArray list)
            throw new MeteoraException($"{path}: 'adapters' must be a list of {{\"name\", \"path\"}} objects, not {o["adapters"]?.ToJsonString() ?? "absent"}");
        if (list.Count == 0) throw new MeteoraException($"{path}: the adapter list is empty");
        var adapters = new List<MeteoraAdapterRef>();
        foreach (var item in list)
        {
            if (item is not JsonObject entry) throw new MeteoraException($"{path}: adapter {adapters.Count} must be an object with a \"name\", not {item?.ToJsonString() ?? "null"}");
            string? name = JsonFields.Str(entry, "name", path);
            if (string.IsNullOrWhiteSpace(name)) throw new MeteoraException($"{path}: adapter {adapters.Count} has no name");
            if (adapters.Any(a => a.Name == name)) throw new MeteoraException($"{path}: adapter '{name}' is listed twice");
            string? p = JsonFields.Str(entry, "path", path);
            adapters.Add(new MeteoraAdapterRef(name, p));
        }
        var targets = JsonFields.StrList(o, "target_modules", path) ?? ProjectionSite.AllNames;
        foreach (var name in targets)
            if (!ProjectionSite.AllNames.Contains(name)) throw new MeteoraException($"{path}: target module '{name}' is not a LLaMA projection");
        int topK = JsonFields.Int(o, "top_k", path, min: 1) ?? 2;
        if (topK < 1 || topK > adapters.Count) throw new MeteoraException($"{path}: top_k = {topK} must be between 1 and the {adapters.Count} adapters");
        double temperature = JsonFields.Double(o, "temperature", path, positive: true) ?? 1.0;
        if (!(temperature > 0)) throw new MeteoraException($"{path}: temperature = {temperature} must be positive");
        return new MeteoraCheckpointConfig
        {
            BaseModel = JsonFields.Str(o, "base_model", path),
            Adapters = adapters, TargetModules = targets, TopK = topK, Temperature = temperature,
        };
    }

    /// <summary>Resolves a path from the config against the checkpoint folder.</summary>
    public static string Resolve(string folder, string path) =>
        System.IO.Path.IsPathRooted(path) ? path : System.IO.Path.GetFullPath(System.IO.Path.Combine(folder, path));

    /// <summary>Writes the config into <paramref name="folder"/> (atomically).</summary>
    public void Save(string folder)
    {
        var o = new JsonObject
        {
            ["format"] = "meteora",
            ["version"] = 1,
            ["base_model"] = BaseModel,
            ["adapters"] = new JsonArray(Adapters.Select(a => (JsonNode)new JsonObject { ["name"] = a.Name, ["path"] = a.Path }).ToArray()),
            ["target_modules"] = new JsonArray(TargetModules.Select(t => (JsonNode)JsonValue.Create(t)!).ToArray()),
            ["top_k"] = TopK,
            ["temperature"] = Temperature,
        };
        Directory.CreateDirectory(folder);
        AtomicFile.WriteAllText(System.IO.Path.Combine(folder, FileName), o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
