using System.Text.Json;
using System.Text.Json.Nodes;
using Meteora.IO;
using static TorchSharp.torch;

namespace Meteora.Moe;

/// <summary>
/// <c>remove-adapter</c>: a copy of a MeteoRA checkpoint without one adapter — its entry in the config, its row in
/// every gate and, in a self-contained checkpoint, its weights. No training: a token's top-k is taken over the
/// remaining logits, so wherever the removed adapter was not in a token's top-k its routing is exactly as before.
/// Works on the files alone (no base model needed) and writes the new folder atomically (a sibling temporary
/// folder renamed into place).
/// </summary>
public static class AdapterRemoval
{
    /// <summary>What was removed and whether top-k had to shrink.</summary>
    public sealed record Result(string Removed, int Index, int AdaptersLeft, int TopK, bool TopKLowered);

    /// <summary>Writes a copy of the checkpoint in <paramref name="meteoraFolder"/> without adapter <paramref name="name"/> to <paramref name="outFolder"/>.</summary>
    public static Result Remove(string meteoraFolder, string name, string outFolder)
    {
        var config = MeteoraCheckpointConfig.Load(meteoraFolder);
        int index = config.Adapters.ToList().FindIndex(a => a.Name == name);
        if (index < 0)
            throw new MeteoraException($"{Path.Combine(meteoraFolder, MeteoraCheckpointConfig.FileName)}: no adapter named '{name}' (it has {string.Join(", ", config.Adapters.Select(a => a.Name))})");
        if (config.Adapters.Count == 1) throw new MeteoraException($"remove-adapter: '{name}' is the checkpoint's only adapter");
        CheckOut(meteoraFolder, outFolder);

        int left = config.Adapters.Count - 1;
        string parent = Path.GetDirectoryName(Path.GetFullPath(outFolder))!;
        Directory.CreateDirectory(parent);
        string staging = Path.Combine(parent, $".{Path.GetFileName(Path.GetFullPath(outFolder))}.tmp-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        try
        {
            var adapters = config.Adapters.Where((_, i) => i != index)
                .Select(a => a with { Path = a.Path is null ? null : Relocate(meteoraFolder, a.Path, outFolder) }).ToList();
            var next = config with
            {
                Adapters = adapters, TopK = Math.Min(config.TopK, left),
                BaseModel = config.BaseModel is null ? null : Relocate(meteoraFolder, config.BaseModel, outFolder),
            };
            next.Save(staging);
            WriteGates(meteoraFolder, staging, index, config.Adapters.Count);
            if (File.Exists(Path.Combine(meteoraFolder, MeteoraCheckpoint.AdaptersFile))) WriteAdapters(meteoraFolder, staging, name);
            Directory.Move(staging, outFolder);
            return new Result(name, index, left, next.TopK, next.TopK < config.TopK);
        }
        catch
        {
            try { Directory.Delete(staging, true); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>The output must be a new folder (or an empty one), never the source.</summary>
    internal static void CheckOut(string source, string outFolder)
    {
        if (Path.GetFullPath(source).TrimEnd('/') == Path.GetFullPath(outFolder).TrimEnd('/'))
            throw new MeteoraException($"--out: {outFolder} is the checkpoint itself; write the new checkpoint to another folder");
        if (Directory.Exists(outFolder) && Directory.EnumerateFileSystemEntries(outFolder).Any())
            throw new MeteoraException($"--out: {outFolder} already exists and is not empty (nothing is overwritten)");
        if (Directory.Exists(outFolder)) Directory.Delete(outFolder);
    }

    /// <summary>A relative path of the old config, rewritten to point at the same place from the new folder.</summary>
    internal static string Relocate(string oldFolder, string path, string newFolder) =>
        Path.IsPathRooted(path) ? path : Path.GetRelativePath(Path.GetFullPath(newFolder), MeteoraCheckpointConfig.Resolve(oldFolder, path));

    private static void WriteGates(string source, string target, int index, int count)
    {
        string path = Path.Combine(source, MeteoraCheckpoint.GatesFile);
        using var file = SafeTensorsFile.Open(path);
        var kept = new List<KeyValuePair<string, Tensor>>();
        try
        {
            foreach (var (key, entry) in file.Entries.OrderBy(e => e.Key, StringComparer.Ordinal))
            {
                if (entry.Shape.Length != 2 || entry.Shape[0] != count)
                    throw new MeteoraException($"{path}: gate '{key}' has shape {entry.ShapeText}, not ({count}, in) for the {count} adapters of the config");
                var gate = file.Load(key, ScalarType.Float32);                                   // (N, in)
                var rows = tensor(Enumerable.Range(0, count).Where(i => i != index).Select(i => (long)i).ToArray());
                kept.Add(new(key, gate.index_select(0, rows)));                                  // (N − 1, in)
                gate.Dispose(); rows.Dispose();
            }
            SafeTensorsWriter.Write(Path.Combine(target, MeteoraCheckpoint.GatesFile), kept, new Dictionary<string, string> { ["format"] = "pt" });
        }
        finally
        {
            foreach (var t in kept) t.Value.Dispose();
        }
    }

    /// <summary>adapters.safetensors without the removed adapter: the others renumbered in order, their metadata kept.</summary>
    private static void WriteAdapters(string source, string target, string name)
    {
        string path = Path.Combine(source, MeteoraCheckpoint.AdaptersFile);
        using var file = SafeTensorsFile.Open(path);
        if (!file.Metadata.TryGetValue("adapters", out var json))
            throw new MeteoraException($"{path}: no 'adapters' metadata (names and configs of the embedded adapters)");
        var meta = JsonNode.Parse(json)!.AsArray();
        int removed = meta.Select((m, i) => (m, i)).FirstOrDefault(x => x.m?["name"]?.GetValue<string>() == name, (null, -1)).Item2;
        var tensors = new List<KeyValuePair<string, Tensor>>();
        try
        {
            var kept = new JsonArray();
            int next = 0;
            for (int i = 0; i < meta.Count; i++)
            {
                if (i == removed) continue;
                foreach (var key in file.Entries.Keys.Where(k => k.StartsWith($"adapters.{i}.", StringComparison.Ordinal)).Order(StringComparer.Ordinal))
                    tensors.Add(new($"adapters.{next}.{key[$"adapters.{i}.".Length..]}", file.Load(key)));
                kept.Add(meta[i]!.DeepClone());
                next++;
            }
            SafeTensorsWriter.Write(Path.Combine(target, MeteoraCheckpoint.AdaptersFile), tensors,
                new Dictionary<string, string> { ["format"] = "pt", ["adapters"] = kept.ToJsonString() });
        }
        finally
        {
            foreach (var t in tensors) t.Value.Dispose();
        }
    }
}
