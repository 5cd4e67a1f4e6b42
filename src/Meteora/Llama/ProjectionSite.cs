namespace Meteora.Llama;

/// <summary>
/// Where a linear projection sits in the model: layer, block ("self_attn" or "mlp") and name ("q_proj", …).
/// <see cref="Key"/> is its Hugging Face module path, e.g. <c>model.layers.0.self_attn.q_proj</c>.
/// </summary>
public sealed record ProjectionSite(int Layer, string Block, string Name, int InFeatures, int OutFeatures)
{
    /// <summary>The seven projections of a LLaMA decoder layer, in Hugging Face order.</summary>
    public static readonly string[] AllNames = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    public string Key => $"model.layers.{Layer}.{Block}.{Name}";

    /// <summary>"self_attn" for q/k/v/o, "mlp" for gate/up/down.</summary>
    public static string BlockOf(string name) => name is "gate_proj" or "up_proj" or "down_proj" ? "mlp" : "self_attn";
}
