using System.Text;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.IO;

/// <summary>
/// A validated, open safetensors file. The header is checked in full when the file is opened (length, JSON,
/// dtypes, shape × dtype size = byte span, spans inside the file, no overlaps); tensor data is then streamed
/// straight into destination tensors in bounded chunks, so loading never holds a second copy of the file.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    /// <summary>Upper bound on a header, as in the reference implementation (100 MB).</summary>
    private const long MaxHeaderBytes = 100_000_000;
    /// <summary>Bytes moved per read when a conversion or device copy needs a staging buffer.</summary>
    private const long ChunkBytes = 64L << 20;

    private readonly SafeFileHandle _handle;
    private readonly long _dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, SafeTensorEntry> Entries { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafeTensorsFile(string path, SafeFileHandle handle, long dataStart,
        Dictionary<string, SafeTensorEntry> entries, Dictionary<string, string> metadata)
    {
        Path = path; _handle = handle; _dataStart = dataStart; Entries = entries; Metadata = metadata;
    }

    /// <summary>Opens and validates <paramref name="path"/>; every problem is a one-line <see cref="MeteoraException"/>.</summary>
    public static SafeTensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new MeteoraException($"{path}: file not found");
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            long fileLength = RandomAccess.GetLength(handle);
            if (fileLength < 8) throw Corrupt(path, $"file is {fileLength} bytes, shorter than the 8-byte header length");
            Span<byte> lenBytes = stackalloc byte[8];
            RandomAccess.Read(handle, lenBytes, 0);
            long headerLength = (long)BitConverter.ToUInt64(lenBytes);
            if (headerLength <= 0 || headerLength > MaxHeaderBytes)
                throw Corrupt(path, $"header length {headerLength} is not plausible");
            if (8 + headerLength > fileLength)
                throw Corrupt(path, $"header length {headerLength} runs past the end of the {fileLength}-byte file (truncated?)");
            var headerBytes = new byte[headerLength];
            RandomAccess.Read(handle, headerBytes, 8);
            var (entries, metadata) = ParseHeader(path, headerBytes, fileLength - 8 - headerLength);
            return new SafeTensorsFile(path, handle, 8 + headerLength, entries, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static MeteoraException Corrupt(string path, string cause) => new($"{path}: corrupt safetensors: {cause}");

    private static (Dictionary<string, SafeTensorEntry>, Dictionary<string, string>) ParseHeader(
        string path, byte[] headerBytes, long dataLength)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(headerBytes); }
        catch (JsonException e) { throw Corrupt(path, $"header is not valid JSON ({e.Message.Split('\n')[0]})"); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Corrupt(path, "header is not a JSON object");

        var entries = new Dictionary<string, SafeTensorEntry>();
        var metadata = new Dictionary<string, string>();
        foreach (var prop in doc.RootElement.EnumerateObject())
        {
            if (prop.Name == "__metadata__")
            {
                if (prop.Value.ValueKind == JsonValueKind.Object)
                    foreach (var m in prop.Value.EnumerateObject())
                        metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                continue;
            }
            entries[prop.Name] = ParseEntry(path, prop.Name, prop.Value, dataLength);
        }

        // Spans must not overlap: sort by start and compare each with the previous end.
        SafeTensorEntry? previous = null;
        foreach (var e in entries.Values.Where(e => e.ByteLength > 0).OrderBy(e => e.Begin))
        {
            if (previous != null && e.Begin < previous.End)
                throw Corrupt(path, $"tensors '{previous.Name}' and '{e.Name}' overlap");
            previous = e;
        }
        return (entries, metadata);
    }

    private static SafeTensorEntry ParseEntry(string path, string name, JsonElement value, long dataLength)
    {
        if (value.ValueKind != JsonValueKind.Object
            || !value.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String
            || !value.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array
            || !value.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array
            || offEl.GetArrayLength() != 2)
            throw Corrupt(path, $"tensor '{name}' needs dtype, shape and two data_offsets");
        string dtypeName = dtypeEl.GetString()!;
        if (!SafeTensorDType.TryParse(dtypeName, out var dtype, out int size))
            throw Corrupt(path, $"tensor '{name}' has unsupported dtype '{dtypeName}'");
        var shape = new long[shapeEl.GetArrayLength()];
        int i = 0;
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
                throw Corrupt(path, $"tensor '{name}' has an invalid shape");
            shape[i++] = dim;
        }
        var offsets = offEl.EnumerateArray().ToArray();
        if (!offsets[0].TryGetInt64(out long begin) || !offsets[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw Corrupt(path, $"tensor '{name}' has invalid data_offsets");
        // Checked: a crafted shape whose product wraps around could otherwise match the span and pass.
        long bytes = size;
        foreach (long dim in shape)
            try { bytes = checked(bytes * dim); }
            catch (OverflowException) { throw Corrupt(path, $"tensor '{name}' has shape ({string.Join(", ", shape)}), too many elements for a file"); }
        var entry = new SafeTensorEntry(name, dtypeName, dtype, size, shape, begin, end);
        if (bytes != entry.ByteLength)
            throw Corrupt(path, $"tensor '{name}' {entry.ShapeText} {dtypeName} needs {bytes} bytes but spans {entry.ByteLength}");
        if (end > dataLength)
            throw Corrupt(path, $"tensor '{name}' ends at byte {end} of a {dataLength}-byte data section (truncated?)");
        return entry;
    }

    /// <summary>The header record of <paramref name="name"/>, or a one-line error naming file and tensor.</summary>
    public SafeTensorEntry Get(string name) =>
        Entries.TryGetValue(name, out var e) ? e : throw new MeteoraException($"{Path}: missing tensor '{name}'");

    /// <summary>
    /// Streams tensor <paramref name="name"/> into <paramref name="destination"/> (any dtype, any device, same
    /// shape). Same-dtype CPU destinations are filled in place; otherwise a chunk-sized staging buffer converts.
    /// </summary>
    public void ReadInto(string name, Tensor destination)
    {
        var e = Get(name);
        if (!destination.shape.SequenceEqual(e.Shape))
            throw new MeteoraException($"{Path}: tensor '{name}' has shape {e.ShapeText}, expected ({string.Join(", ", destination.shape)})");
        if (e.ElementCount == 0) return;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var flat = destination.view(-1);   // (numel,) view, so chunks are contiguous narrows
        long chunkElements = Math.Max(1, ChunkBytes / e.ElementSize);
        bool direct = destination.device_type == DeviceType.CPU && destination.dtype == e.DType && destination.is_contiguous();
        Tensor? staging = direct ? null : empty(Math.Min(chunkElements, e.ElementCount), e.DType);
        for (long start = 0; start < e.ElementCount; start += chunkElements)
        {
            long count = Math.Min(chunkElements, e.ElementCount - start);
            var target = direct ? flat.narrow(0, start, count) : staging!.narrow(0, 0, count);
            ReadExactly(target.bytes, _dataStart + e.Begin + start * e.ElementSize);
            if (!direct) flat.narrow(0, start, count).copy_(target);
        }
    }

    /// <summary>Loads tensor <paramref name="name"/> as a new tensor (optionally converted) on <paramref name="device"/>.</summary>
    public Tensor Load(string name, ScalarType? dtype = null, Device? device = null)
    {
        var e = Get(name);
        var result = empty(e.Shape, dtype ?? e.DType, device ?? CPU);
        ReadInto(name, result);
        return result;
    }

    /// <summary>Every tensor of the file, in file order (for small files: tests, edits, conversions).</summary>
    public List<KeyValuePair<string, Tensor>> LoadAll() =>
        Entries.Values.OrderBy(e => e.Begin).Select(e => new KeyValuePair<string, Tensor>(e.Name, Load(e.Name))).ToList();

    private void ReadExactly(Span<byte> buffer, long offset)
    {
        while (buffer.Length > 0)
        {
            int n = RandomAccess.Read(_handle, buffer, offset);
            if (n <= 0) throw new MeteoraException($"{Path}: unexpected end of file at byte {offset} (truncated?)");
            buffer = buffer[n..];
            offset += n;
        }
    }

    public void Dispose() => _handle.Dispose();
}
