namespace Meteora.Serving;

/// <summary>What the engine reports about one sequence, in order: tokens, then one <see cref="FinishEvent"/>.</summary>
public abstract record EngineEvent;

/// <summary>One alternative token and its log-probability.</summary>
public sealed record TokenLogprob(int Id, string Text, byte[] Bytes, float Logprob);

/// <summary>Routing weights of one generated token: per layer group, each adapter's mean weight over the group's projections.</summary>
/// <param name="Groups">(G)(N) mean routing weights.</param>
public sealed record TokenRouting(float[][] Groups)
{
    /// <summary>Mean over the groups: (N).</summary>
    public float[] Overall()
    {
        int n = Groups[0].Length;
        var mean = new float[n];
        foreach (var g in Groups) for (int j = 0; j < n; j++) mean[j] += g[j] / Groups.Length;
        return mean;
    }
}

/// <summary>
/// A generated token: its id, the text that became final with it (possibly empty: held back while it may be part
/// of a stop string or of a UTF-8 character), its log-probability and alternatives when asked, its routing, and
/// the engine step that made it (steps count the engine loop's iterations: one prefill chunk and/or one decode
/// step each).
/// </summary>
public sealed record TokenEvent(int Id, string Text, string TokenText, byte[] TokenBytes, TokenLogprob? Logprob,
    IReadOnlyList<TokenLogprob>? TopLogprobs, TokenRouting? Routing, int TextOffset, long Step) : EngineEvent;

/// <summary>
/// The end of a sequence: <c>stop</c> (EOS or a stop string), <c>length</c> (max_tokens or the context), or
/// <c>abort</c> (cancelled or the engine stopping), with any text still held back and the token counts.
/// </summary>
public sealed record FinishEvent(string Reason, string Text, int PromptTokens, int CompletionTokens, string? Error = null) : EngineEvent;
