using System.Text;
using System.Text.Json;
using static TorchSharp.torch;

namespace Meteora.IO;

/// <summary>Writes tensors to a safetensors file atomically (temp file + rename), in the order given.</summary>
public static class SafeTensorsWriter
{
    /// <summary>Writes <paramref name="tensors"/> (any device; copied to CPU one at a time) to <paramref name="path"/>.</summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var header = new Dictionary<string, object>();
        if (metadata is { Count: > 0 }) header["__metadata__"] = metadata;
        long offset = 0;
        foreach (var (name, t) in list)
        {
            long bytes = t.numel() * SafeTensorDType.SizeOf(t.dtype);
            header[name] = new { dtype = SafeTensorDType.NameOf(t.dtype), shape = t.shape, data_offsets = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        // Pad the header with spaces to a multiple of 8 bytes, as the reference writer does (aligned data start).
        int padded = (json.Length + 7) / 8 * 8;
        var headerBytes = new byte[padded];
        Array.Fill(headerBytes, (byte)' ');
        json.CopyTo(headerBytes, 0);

        AtomicFile.Write(path, tmp =>
        {
            using var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);
            fs.Write(BitConverter.GetBytes((ulong)padded));
            fs.Write(headerBytes);
            foreach (var (_, t) in list)
            {
                using var scope = NewDisposeScope();
                var cpu = t.detach().to(CPU).contiguous().view(-1);  // (numel,)
                const long chunk = 32L << 20;
                long perChunk = Math.Max(1, chunk / SafeTensorDType.SizeOf(t.dtype));
                for (long s = 0; s < cpu.numel(); s += perChunk)
                    fs.Write(cpu.narrow(0, s, Math.Min(perChunk, cpu.numel() - s)).bytes);
            }
            fs.Flush(true);
        });
    }
}
