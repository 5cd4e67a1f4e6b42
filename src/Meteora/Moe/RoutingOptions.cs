namespace Meteora.Moe;

/// <summary>
/// Per-call routing settings shared by every <see cref="MeteoraLinear"/> of a model: top-k, temperature, the
/// mixing strategy, and whether the training form of the router is used. Change them between calls.
/// </summary>
public sealed class RoutingOptions
{
    private int _topK = 1;
    private double _temperature = 1.0;

    /// <summary>Number of adapters per token, 1 ≤ k ≤ N (checked against N by the model).</summary>
    public int TopK
    {
        get => _topK;
        set => _topK = value >= 1 ? value : throw new MeteoraException($"--top-k: {value} must be ≥ 1");
    }

    /// <summary>Softmax temperature over the top-k logits.</summary>
    public double Temperature
    {
        get => _temperature;
        set => _temperature = value > 0 && double.IsFinite(value) ? value : throw new MeteoraException($"--temperature: {value} must be a positive number");
    }

    public MixingStrategy Strategy { get; set; } = MixingStrategy.Auto;

    /// <summary>
    /// Training form: softmax over all N logits (float32), top-k, renormalise; otherwise the inference form:
    /// top-k of the raw logits, softmax of those k (weight 1 when k = 1). Equal at T = 1.
    /// </summary>
    public bool TrainingForm { get; set; }

    /// <summary>When set, the tokens it covers go to its adapter instead of the gates' choice (a diagnostic).</summary>
    public ForcedRouting? Forced { get; set; }

    /// <summary>
    /// Arrow routing (<see cref="ArrowModel"/>): the gate rows hold each adapter's prototype P (N, in) and tokens are
    /// ranked by |P x| instead of G x; an adapter that does not adapt a projection is no candidate there. The
    /// weights follow the inference form. Routes with ATen ops (never the fused routing kernel).
    /// </summary>
    public bool Arrow { get; set; }

    /// <summary>
    /// Per-row routing for batched calls (serving): when set, each batch row follows its own mode, top-k and
    /// temperature, and the call-wide <see cref="TopK"/>, <see cref="Temperature"/> and <see cref="Forced"/> are
    /// ignored. Its row count must equal the batch of every call made while it is set.
    /// </summary>
    public RowRouting? Rows { get; set; }
}
