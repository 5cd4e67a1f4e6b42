using System.Text.Json;
using static TorchSharp.torch;

namespace Meteora.IO;

/// <summary>
/// Writes a model's weights the way Hugging Face does: one <c>model.safetensors</c>, or — when they exceed the shard
/// size — <c>model-0000i-of-0000n.safetensors</c> shards plus <c>model.safetensors.index.json</c> (total size and
/// the tensor → shard map), which <see cref="CheckpointFiles"/> reads back. Tensors are never split; one larger
/// than the shard size gets a shard of its own. Every file is written atomically; stale weight files of another
/// layout in the folder are removed after the new ones are in place.
/// </summary>
internal static class ShardedCheckpointWriter
{
    public const string SingleFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";

    /// <summary>Writes <paramref name="tensors"/> into <paramref name="folder"/>; <paramref name="maxShardBytes"/> ≤ 0 means one file.</summary>
    public static IReadOnlyList<string> Write(string folder, IReadOnlyList<KeyValuePair<string, Tensor>> tensors, long maxShardBytes)
    {
        Directory.CreateDirectory(folder);
        ArtifactCard.Unseal(folder);
        var metadata = new Dictionary<string, string> { ["format"] = "pt" };
        long Bytes(Tensor t) => t.numel() * SafeTensorDType.SizeOf(t.dtype);
        var shards = new List<List<KeyValuePair<string, Tensor>>> { new() };
        long current = 0;
        foreach (var kv in tensors)
        {
            long b = Bytes(kv.Value);
            if (maxShardBytes > 0 && current > 0 && current + b > maxShardBytes) { shards.Add(new()); current = 0; }
            shards[^1].Add(kv);
            current += b;
        }
        var written = new List<string>();
        if (shards.Count == 1)
        {
            SafeTensorsWriter.Write(Path.Combine(folder, SingleFile), shards[0], metadata);
            written.Add(SingleFile);
        }
        else
        {
            var map = new SortedDictionary<string, string>(StringComparer.Ordinal);
            for (int i = 0; i < shards.Count; i++)
            {
                string name = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
                SafeTensorsWriter.Write(Path.Combine(folder, name), shards[i], metadata);
                foreach (var kv in shards[i]) map[kv.Key] = name;
                written.Add(name);
            }
            AtomicFile.WriteAllText(Path.Combine(folder, IndexFile), JsonSerializer.Serialize(new
            {
                metadata = new { total_size = tensors.Sum(kv => Bytes(kv.Value)) },
                weight_map = map,
            }, new JsonSerializerOptions { WriteIndented = true }));
            written.Add(IndexFile);
        }
        // A folder holds one layout: drop weight files the new layout does not use (a re-run with another shard size).
        foreach (var f in Directory.GetFiles(folder, "model*.safetensors*"))
            if (!written.Contains(Path.GetFileName(f))) File.Delete(f);
        return written;
    }
}
