using System.Text.Json;
using static TorchSharp.torch;

namespace Meteora.IO;

/// <summary>
/// The weights of a Hugging Face model folder: <c>model.safetensors</c>, or <c>model.safetensors.index.json</c>
/// with its shards. Resolves a tensor name to the shard that holds it; all shards are validated on open.
/// </summary>
internal sealed class CheckpointFiles : IDisposable
{
    private readonly Dictionary<string, SafeTensorsFile> _byTensor = new();
    private readonly List<SafeTensorsFile> _files = new();

    public string Folder { get; }

    private CheckpointFiles(string folder) => Folder = folder;

    /// <summary>Opens the weights of <paramref name="folder"/>; a missing, corrupt or inconsistent file is a one-line error.</summary>
    public static CheckpointFiles Open(string folder)
    {
        var result = new CheckpointFiles(folder);
        try
        {
            string single = Path.Combine(folder, "model.safetensors");
            string index = Path.Combine(folder, "model.safetensors.index.json");
            if (File.Exists(single))
                result.Add(SafeTensorsFile.Open(single), null);
            else if (File.Exists(index))
                result.OpenSharded(index);
            else if (File.Exists(Path.Combine(folder, "pytorch_model.bin")))
                throw new MeteoraException($"{folder}: only pytorch_model.bin found; convert the weights to safetensors (pickle files are not loaded)");
            else
                throw new MeteoraException($"{folder}: no model.safetensors or model.safetensors.index.json");
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    private void OpenSharded(string indexPath)
    {
        Dictionary<string, string> weightMap;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new MeteoraException($"{indexPath}: no weight_map object");
            weightMap = map.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "");
        }
        catch (JsonException e)
        {
            throw new MeteoraException($"{indexPath}: invalid JSON ({e.Message.Split('\n')[0]})");
        }
        foreach (var shard in weightMap.Values.Distinct())
        {
            if (shard.Contains("..") || Path.IsPathRooted(shard))
                throw new MeteoraException($"{indexPath}: shard name '{shard}' leaves the folder");
            var file = SafeTensorsFile.Open(Path.Combine(Folder, shard));
            var expected = weightMap.Where(kv => kv.Value == shard).Select(kv => kv.Key).ToHashSet();
            foreach (var name in expected)
                if (!file.Entries.ContainsKey(name))
                    throw new MeteoraException($"{file.Path}: missing tensor '{name}' listed in {Path.GetFileName(indexPath)}");
            Add(file, expected);
        }
    }

    private void Add(SafeTensorsFile file, HashSet<string>? only)
    {
        _files.Add(file);
        foreach (var name in file.Entries.Keys)
            if (only == null || only.Contains(name))
                _byTensor[name] = file;
    }

    public IEnumerable<string> TensorNames => _byTensor.Keys;

    public bool Contains(string name) => _byTensor.ContainsKey(name);

    /// <summary>The header record of <paramref name="name"/>; a missing tensor is a one-line error naming the folder.</summary>
    public SafeTensorEntry Entry(string name) => FileOf(name).Get(name);

    /// <summary>Streams tensor <paramref name="name"/> into <paramref name="destination"/> (see <see cref="SafeTensorsFile.ReadInto"/>).</summary>
    public void ReadInto(string name, Tensor destination) => FileOf(name).ReadInto(name, destination);

    private SafeTensorsFile FileOf(string name) =>
        _byTensor.TryGetValue(name, out var f) ? f
            : throw new MeteoraException($"{(_files.Count == 1 ? _files[0].Path : Folder)}: missing tensor '{name}'");

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
