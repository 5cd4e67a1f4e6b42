namespace Meteora.Moe;

/// <summary>Which tokens <see cref="ForcedRouting"/> routes.</summary>
public enum ForcedRoutingScope
{
    /// <summary>Every token.</summary>
    All,
    /// <summary>Calls over several positions per sequence (the prompt's prefill); generated tokens use the gates.</summary>
    Prompt,
    /// <summary>Calls over one position per sequence (decode steps); the prompt uses the gates.</summary>
    Answer,
}

/// <summary>
/// Routes tokens to one adapter instead of asking the gates (weight 1; for k &gt; 1 the other k − 1 slots get
/// weight 0). A diagnostic: with the task's own adapter on every token MeteoRA computes what PEFT with that adapter
/// computes, so the distance between the two is what the gates lose; the scopes split that loss between the
/// prompt's routing and the answer's. Set on <see cref="RoutingOptions.Forced"/>.
/// </summary>
/// <param name="Adapter">Adapter index (gate order).</param>
/// <param name="Scope">Which tokens it applies to.</param>
/// <param name="Positions">
/// Optional, for a one-row call over exactly this many positions (a prefill of one sequence): the adapter of each
/// position, or −1 where the gates route as usual; every other call routes to <paramref name="Adapter"/>. Lets a
/// diagnostic route each line of a composite prompt to its own task (<c>eval --route-by-task tokens</c>).
/// </param>
public sealed record ForcedRouting(int Adapter, ForcedRoutingScope Scope, IReadOnlyList<int>? Positions = null)
{
    /// <summary>
    /// Whether a projection call with input shape <paramref name="shape"/> (…, T, in) is forced: Prompt applies to
    /// calls with T &gt; 1, Answer to T = 1 (a one-token prompt therefore counts as an answer step).
    /// </summary>
    public bool AppliesTo(long[] shape) => Scope switch
    {
        ForcedRoutingScope.All => true,
        ForcedRoutingScope.Prompt => shape.Length >= 3 && shape[^2] > 1,
        _ => shape.Length < 3 || shape[^2] == 1,
    };

    /// <summary>Parses all, prompt or answer (the CLI's spelling).</summary>
    public static ForcedRoutingScope ParseScope(string text) => text switch
    {
        "all" => ForcedRoutingScope.All,
        "prompt" => ForcedRoutingScope.Prompt,
        "answer" => ForcedRoutingScope.Answer,
        _ => throw new MeteoraException($"--route-by-task: unknown scope '{text}' (all, prompt or answer; tokens with --composite-guided)"),
    };
}
