using TorchSharp;

namespace Meteora.IO;

/// <summary>Maps safetensors dtype strings ("F32", "BF16", …) to TorchSharp scalar types and element sizes.</summary>
public static class SafeTensorDType
{
    private static readonly Dictionary<string, (torch.ScalarType Type, int Size)> ByName = new()
    {
        ["F64"] = (torch.ScalarType.Float64, 8),
        ["F32"] = (torch.ScalarType.Float32, 4),
        ["F16"] = (torch.ScalarType.Float16, 2),
        ["BF16"] = (torch.ScalarType.BFloat16, 2),
        ["I64"] = (torch.ScalarType.Int64, 8),
        ["I32"] = (torch.ScalarType.Int32, 4),
        ["I16"] = (torch.ScalarType.Int16, 2),
        ["I8"] = (torch.ScalarType.Int8, 1),
        ["U8"] = (torch.ScalarType.Byte, 1),
        ["BOOL"] = (torch.ScalarType.Bool, 1),
    };

    /// <summary>True when <paramref name="name"/> is a dtype this reader can load.</summary>
    public static bool TryParse(string name, out torch.ScalarType type, out int elementSize)
    {
        if (ByName.TryGetValue(name, out var entry)) { (type, elementSize) = entry; return true; }
        type = default; elementSize = 0;
        return false;
    }

    /// <summary>The safetensors name of a scalar type; throws for types safetensors cannot hold here.</summary>
    public static string NameOf(torch.ScalarType type)
    {
        foreach (var (name, entry) in ByName)
            if (entry.Type == type) return name;
        throw new MeteoraException($"dtype {type} cannot be written to safetensors");
    }

    /// <summary>Element size in bytes of a scalar type that safetensors can hold.</summary>
    public static int SizeOf(torch.ScalarType type) => ByName[NameOf(type)].Size;
}
