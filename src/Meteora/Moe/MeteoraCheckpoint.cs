using System.Text.Json;
using Meteora.IO;
using Meteora.Llama;
using Meteora.Lora;
using static TorchSharp.torch;

namespace Meteora.Moe;

/// <summary>
/// Reading and writing the parts of a MeteoRA checkpoint folder besides its config: <c>gates.safetensors</c>
/// (<c>{projection}.moe_gate.weight</c>, (N, in_features)) and the optional self-contained
/// <c>adapters.safetensors</c> (<c>adapters.{i}.{projection}.lora_A|lora_B.weight</c>, with each adapter's PEFT
/// config in the metadata).
/// </summary>
public static class MeteoraCheckpoint
{
    public const string GatesFile = "gates.safetensors";
    public const string AdaptersFile = "adapters.safetensors";

    public static string GateKey(string projectionKey) => $"{projectionKey}.moe_gate.weight";

    /// <summary>Loads the adapters the config lists: from their folders, or from adapters.safetensors where the config gives no path.</summary>
    public static List<LoraAdapter> LoadAdapters(string folder, MeteoraCheckpointConfig config, LlamaConfig baseConfig)
    {
        // Embedded adapters serve only the entries without a path: a stale adapters.safetensors beside a config that
        // names folders is never read.
        var embedded = config.Adapters.Any(a => a.Path is null) ? ReadEmbedded(folder, baseConfig) : [];
        var result = new List<LoraAdapter>();
        try
        {
            foreach (var a in config.Adapters)
            {
                if (a.Path is null && embedded.TryGetValue(a.Name, out var inside)) { result.Add(inside); embedded.Remove(a.Name); continue; }
                if (a.Path is null)
                    throw new MeteoraException($"{Path.Combine(folder, MeteoraCheckpointConfig.FileName)}: adapter '{a.Name}' has no path and is not in {AdaptersFile}");
                string path = MeteoraCheckpointConfig.Resolve(folder, a.Path);
                if (!Directory.Exists(path))
                    throw new MeteoraException($"{path}: adapter '{a.Name}' not found (path in {Path.Combine(folder, MeteoraCheckpointConfig.FileName)})");
                result.Add(LoraAdapter.Load(path, baseConfig, a.Name));
            }
            return result;
        }
        catch
        {
            foreach (var r in result) r.Dispose();
            throw;
        }
        finally
        {
            foreach (var left in embedded.Values) left.Dispose();
        }
    }

    /// <summary>The 'adapters' metadata: a JSON list of {"name": string, "config": object}, or a one-line error naming the file.</summary>
    private static List<(string Name, JsonElement Config)> EmbeddedEntries(string path, string json)
    {
        JsonElement root;
        try { root = JsonDocument.Parse(json).RootElement.Clone(); }   // Clone: independent of the (undisposed) document
        catch (JsonException e) { throw new MeteoraException($"{path}: 'adapters' metadata is not JSON ({e.Message.Split('\n')[0]})"); }
        if (root.ValueKind != JsonValueKind.Array)
            throw new MeteoraException($"{path}: 'adapters' metadata must be a list of {{name, config}} objects, not {root.ValueKind.ToString().ToLowerInvariant()}");
        var entries = new List<(string, JsonElement)>();
        int i = 0;
        foreach (var e in root.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String
                || string.IsNullOrEmpty(name.GetString()) || !e.TryGetProperty("config", out var config) || config.ValueKind != JsonValueKind.Object)
                throw new MeteoraException($"{path}: 'adapters' metadata entry {i} needs a non-empty string 'name' and an object 'config'");
            entries.Add((name.GetString()!, config));
            i++;
        }
        return entries;
    }

    private static Dictionary<string, LoraAdapter> ReadEmbedded(string folder, LlamaConfig baseConfig)
    {
        string path = Path.Combine(folder, AdaptersFile);
        var result = new Dictionary<string, LoraAdapter>();
        if (!File.Exists(path)) return result;
        using var file = SafeTensorsFile.Open(path);
        if (!file.Metadata.TryGetValue("adapters", out var json))
            throw new MeteoraException($"{path}: no 'adapters' metadata (names and configs of the embedded adapters)");
        var entries = EmbeddedEntries(path, json);
        var sites = LoraAdapter.Sites(baseConfig).ToDictionary(s => s.Key);
        for (int i = 0; i < entries.Count; i++)
        {
            var (name, configJson) = entries[i];
            var config = LoraConfig.Parse(System.Text.Json.Nodes.JsonNode.Parse(configJson.GetRawText())!.AsObject(), $"{path} (adapter '{name}')");
            var weights = new Dictionary<string, (Tensor A, Tensor B)>();
            string prefix = $"adapters.{i}.";
            foreach (var key in file.Entries.Keys.Where(k => k.StartsWith(prefix) && k.EndsWith(".lora_A.weight")))
            {
                string projection = key[prefix.Length..^".lora_A.weight".Length];
                if (!sites.TryGetValue(projection, out var site))
                    throw new MeteoraException($"{path}: tensor '{key}' names no projection of the base");
                var a = file.Load(key, ScalarType.Float32);
                var b = file.Load($"{prefix}{projection}.lora_B.weight", ScalarType.Float32);
                if (a.shape[1] != site.InFeatures || b.shape[0] != site.OutFeatures || a.shape[0] != b.shape[1])
                    throw new MeteoraException($"{path}: adapter '{name}' at {projection} has A {Shape(a)} and B {Shape(b)}, which do not fit ({site.OutFeatures} × {site.InFeatures})");
                weights[projection] = (a, b);
            }
            result[name] = new LoraAdapter(name, path, config, weights);
        }
        return result;
    }

    private static string Shape(Tensor t) => "(" + string.Join(", ", t.shape) + ")";

    /// <summary>Writes every adapter into adapters.safetensors (float32), making the checkpoint self-contained.</summary>
    public static void SaveAdapters(string folder, IReadOnlyList<LoraAdapter> adapters)
    {
        var tensors = new List<KeyValuePair<string, Tensor>>();
        var meta = new List<object>();
        for (int i = 0; i < adapters.Count; i++)
        {
            foreach (var (key, (a, b)) in adapters[i].Weights.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                tensors.Add(new($"adapters.{i}.{key}.lora_A.weight", a));
                tensors.Add(new($"adapters.{i}.{key}.lora_B.weight", b));
            }
            meta.Add(new { name = adapters[i].Name, config = JsonDocument.Parse(adapters[i].Config.ToPeftJson()).RootElement });
        }
        SafeTensorsWriter.Write(Path.Combine(folder, AdaptersFile), tensors,
            new Dictionary<string, string> { ["format"] = "pt", ["adapters"] = JsonSerializer.Serialize(meta) });
    }

    /// <summary>Writes gates.safetensors from (projection key, gate) pairs.</summary>
    public static void SaveGates(string folder, IEnumerable<(string Key, Tensor Gate)> gates) =>
        SafeTensorsWriter.Write(Path.Combine(folder, GatesFile),
            gates.Select(g => new KeyValuePair<string, Tensor>(GateKey(g.Key), g.Gate.detach().to(ScalarType.Float32).cpu())),
            new Dictionary<string, string> { ["format"] = "pt" });
}
