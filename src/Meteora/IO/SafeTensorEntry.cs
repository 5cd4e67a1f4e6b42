using TorchSharp;

namespace Meteora.IO;

/// <summary>One tensor's header record: dtype, shape and its byte span [Begin, End) inside the data section.</summary>
public sealed record SafeTensorEntry(string Name, string DTypeName, torch.ScalarType DType, int ElementSize,
    long[] Shape, long Begin, long End)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => checked(a * b));   // header parsing checked the product fits
    public long ByteLength => End - Begin;
    public string ShapeText => "(" + string.Join(", ", Shape) + ")";
}
