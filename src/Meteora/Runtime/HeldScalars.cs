using TorchSharp;

namespace Meteora.Runtime;

/// <summary>
/// Scalars held for the process, for ops whose TorchSharp overload would otherwise make one implicitly.
/// TorchSharp 0.107 leaves a Scalar made from a number to its finalizer (dotnet/TorchSharp#1434); once the native
/// handle has been read the managed object is unreachable, so a collection during the native call can free it
/// mid-op ("Unknown scalar type" / "Expected false to be true … toFloat"). The overloads without an alpha —
/// <c>t.add(scalar)</c>, <c>t.add_(scalar)</c>, <c>t.add_(tensor)</c> — pass an implicit alpha of 1 this way, so
/// hot paths call the two-argument form with <see cref="One"/>. Seen in the wild: a LoRA run with a data-prefetch
/// thread allocating in parallel failed in RmsNorm's <c>variance.add(eps)</c> after 9 steps.
/// </summary>
internal static class HeldScalars
{
    /// <summary>1, the alpha of an unscaled add.</summary>
    public static readonly Scalar One = 1.ToScalar();
    /// <summary>0, what masked-out terms are filled with.</summary>
    public static readonly Scalar Zero = 0.ToScalar();
    /// <summary>−∞, what masked-out logits are filled with.</summary>
    public static readonly Scalar NegativeInfinity = double.NegativeInfinity.ToScalar();
}
