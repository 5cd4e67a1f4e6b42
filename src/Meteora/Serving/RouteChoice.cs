namespace Meteora.Serving;

/// <summary>How a request's tokens are routed.</summary>
public enum RouteMode
{
    /// <summary>The MeteoRA gates pick each token's top-k adapters.</summary>
    Gates,
    /// <summary>One adapter for every token (what PEFT with that adapter computes).</summary>
    Adapter,
    /// <summary>No adapter: the base model.</summary>
    Base,
}

/// <summary>A request's routing: the mode, the forced adapter's index, and the gates' top-k and temperature.</summary>
/// <param name="ReturnRouting">Report each generated token's routing (top-k adapters and weights per layer group).</param>
public sealed record RouteChoice(RouteMode Mode, int Adapter = -1, int TopK = 1, double Temperature = 1.0, bool ReturnRouting = false)
{
    public static RouteChoice Base { get; } = new(RouteMode.Base);
}
