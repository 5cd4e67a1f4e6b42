using Meteora.Generation;
using Meteora.Llama;
using Meteora.Lora;
using static TorchSharp.torch;

namespace Meteora.Moe;

/// <summary>
/// The Arrow baseline (Ostapenko et al. 2024, "Towards Modular LLMs by Building and Reusing a Library of LoRAs";
/// PEFT's <c>ArrowConfig</c>): training-free per-token routing from the adapters' own weights. At every adapted
/// projection, adapter j's prototype p_j is the top right-singular vector of ΔW_j = s_j B_j A_j
/// (<see cref="ArrowPrototype"/>); a token x goes to the top-k adapters by |⟨x, p_j⟩| with weights
/// softmax(top-k scores / T) (weight 1 when k = 1), and the projection computes W x + Σ w_j ΔW_j x.
/// <para>
/// Built on the MeteoRA machinery: a <see cref="MeteoraModel"/> whose gate rows are the prototypes, with
/// <see cref="RoutingOptions.Arrow"/> set, so every mixing strategy applies. An adapter that does not adapt a
/// projection is no candidate there.
/// </para>
/// </summary>
public sealed class ArrowModel : IDisposable
{
    /// <summary>PEFT's default <c>ArrowConfig.top_k</c>.</summary>
    public const int DefaultTopK = 3;

    /// <summary>The underlying MeteoRA model (prototypes in the gates, Arrow routing on).</summary>
    public MeteoraModel Meteora { get; }
    public LlamaForCausalLM Model => Meteora.Model;
    /// <summary>Adapter names in routing-index order (the order given to <see cref="Load"/>).</summary>
    public IReadOnlyList<string> AdapterNames => Meteora.AdapterNames;
    /// <summary>Top-k, temperature and strategy; change them with <see cref="Configure"/>.</summary>
    public RoutingOptions Routing => Meteora.Routing;

    private ArrowModel(MeteoraModel meteora) => Meteora = meteora;

    /// <summary>
    /// Loads the base at <paramref name="baseFolder"/> with the PEFT LoRA adapters <paramref name="adapters"/>
    /// (index j = position j) and computes their prototypes. 1 ≤ <paramref name="topK"/> ≤ the adapter count.
    /// </summary>
    public static ArrowModel Load(string baseFolder, IReadOnlyList<(string Name, string Folder)> adapters, Device device, ScalarType dtype,
        int topK, double temperature = 1.0)
    {
        if (adapters.Count == 0) throw new MeteoraException("Arrow needs at least one adapter");
        var config = LlamaConfig.Load(baseFolder);
        var loaded = new List<LoraAdapter>();
        MeteoraModel? mm = null;
        try
        {
            foreach (var (name, folder) in adapters) loaded.Add(LoraAdapter.Load(folder, config, name));
            // The projection kinds some adapter adapts; sites that no adapter adapts stay plain linears.
            var targets = LoraAdapter.TargetNames(loaded);
            mm = MeteoraModel.Build(baseFolder, loaded, targets, device, dtype);
            var arrow = new ArrowModel(mm);
            arrow.SetPrototypes();
            arrow.Configure(topK, temperature);
            mm.Routing.Arrow = true;
            return arrow;
        }
        catch
        {
            if (mm is not null) mm.Dispose();   // disposes the adapters it holds
            else loaded.ForEach(a => a.Dispose());
            throw;
        }
    }

    /// <summary>Writes every adapter's prototype into the gate rows (N, in) of every projection; zero rows where it is absent.</summary>
    private void SetPrototypes()
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        foreach (var p in Meteora.Projections)
        {
            for (int j = 0; j < Meteora.Adapters.Count; j++)
            {
                if (!Meteora.Adapters[j].Weights.TryGetValue(p.Site.Key, out var w)) continue;
                p.moe_gate[j].copy_(ArrowPrototype.Compute(w.A, w.B));                // row j ← (in,)
            }
        }
        Meteora.SyncGates();
    }

    /// <summary>Sets top-k (1 ≤ k ≤ N), temperature (&gt; 0) and strategy for the next calls (null keeps the current value).</summary>
    public void Configure(int? topK = null, double? temperature = null, MixingStrategy? strategy = null) =>
        Meteora.Configure(topK, temperature, strategy);

    /// <summary>Logits (B, T, V) of a forward over unpadded rows <paramref name="ids"/> (B, T).</summary>
    public Tensor Forward(Tensor ids) => Model.forward(ids);

    /// <summary>Greedy or sampled generation with Arrow routing.</summary>
    public int[][] Generate(IReadOnlyList<int[]> prompts, GenerationOptions options, Action<int, int[]>? onStep = null) =>
        Meteora.Generate(prompts, options, onStep);

    public void Dispose() => Meteora.Dispose();
}
