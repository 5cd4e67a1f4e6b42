using static TorchSharp.torch;

namespace Meteora.Llama;

/// <summary>
/// A projection that can compute several projections of one input together in fewer launches (MeteoRA's q, k and v,
/// or gate and up, at decode: <c>Moe.MeteoraLinear</c>). The decoder layers ask the first projection of a group; the
/// Llama layer knows only this interface, so it does not depend on the mixture-of-experts layer above it.
/// </summary>
internal interface IGroupedProjection
{
    /// <summary>
    /// The outputs of <paramref name="projections"/> (this one first) for x (…, in), each (…, out), or null when they
    /// cannot run together here (then the caller runs each projection's own forward).
    /// </summary>
    Tensor[]? TryForwardGroup(IReadOnlyList<Linear> projections, Tensor x);
}
