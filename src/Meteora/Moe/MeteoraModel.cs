using Meteora.Generation;
using Meteora.IO;
using Meteora.Llama;
using Meteora.Lora;
using static TorchSharp.torch;

namespace Meteora.Moe;

/// <summary>
/// A LLaMA model with N LoRA adapters embedded as per-token mixtures of experts: the .NET entry point for
/// MeteoRA. Load one from a checkpoint folder, set <see cref="Routing"/> (top-k, temperature, strategy) per
/// call, run <see cref="Forward"/> or <see cref="Generate"/>, and read routing decisions with a
/// <see cref="RoutingRecorder"/>.
/// </summary>
public sealed class MeteoraModel : IDisposable
{
    public LlamaForCausalLM Model { get; }
    public RoutingOptions Routing { get; }
    /// <summary>Adapter (= task) names in gate-index order.</summary>
    public IReadOnlyList<string> AdapterNames { get; }
    public IReadOnlyList<MeteoraLinear> Projections { get; }
    /// <summary>The adapters as loaded (float32, CPU): kept for saving self-contained checkpoints.</summary>
    public IReadOnlyList<LoraAdapter> Adapters { get; }
    public IReadOnlyList<string> TargetModules { get; }

    private MeteoraModel(LlamaForCausalLM model, RoutingOptions routing, IReadOnlyList<LoraAdapter> adapters, IReadOnlyList<string> targets)
    {
        Model = model; Routing = routing; Adapters = adapters; TargetModules = targets;
        AdapterNames = adapters.Select(a => a.Name).ToArray();
        Projections = model.Projections().OfType<MeteoraLinear>().ToList();
    }

    /// <summary>Loads the base at <paramref name="baseFolder"/> and the MeteoRA checkpoint at <paramref name="meteoraFolder"/>.</summary>
    public static MeteoraModel Load(string baseFolder, string meteoraFolder, Device device, ScalarType dtype)
    {
        var config = MeteoraCheckpointConfig.Load(meteoraFolder);
        var baseConfig = LlamaConfig.Load(baseFolder);
        var adapters = MeteoraCheckpoint.LoadAdapters(meteoraFolder, config, baseConfig);
        var model = Build(baseFolder, adapters, config.TargetModules, device, dtype);
        try
        {
            model.Routing.TopK = config.TopK;
            model.Routing.Temperature = config.Temperature;
            model.LoadGates(Path.Combine(meteoraFolder, MeteoraCheckpoint.GatesFile));
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Builds a MeteoRA model from a base and adapters, with zero gates on <paramref name="targets"/>
    /// (initialise or load them next). Adapter i has gate index i.
    /// </summary>
    public static MeteoraModel Build(string baseFolder, IReadOnlyList<LoraAdapter> adapters, IReadOnlyList<string> targets,
        Device device, ScalarType dtype, ScalarType? adapterDtype = null) =>
        Build(factory => LlamaLoader.Load(baseFolder, device, dtype, factory), adapters, targets, device, dtype, adapterDtype);

    /// <summary>
    /// Builds a MeteoRA model around a base that <paramref name="makeBase"/> creates with the projection factory
    /// it is given (loaded from a folder, or synthetic for benchmarks).
    /// </summary>
    public static MeteoraModel Build(Func<Func<ProjectionSite, Linear>, LlamaForCausalLM> makeBase, IReadOnlyList<LoraAdapter> adapters,
        IReadOnlyList<string> targets, Device device, ScalarType dtype, ScalarType? adapterDtype = null)
    {
        if (adapters.Count == 0) throw new MeteoraException("MeteoRA needs at least one adapter");
        var duplicate = adapters.GroupBy(a => a.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new MeteoraException($"adapter '{duplicate.Key}' is given twice");
        var routing = new RoutingOptions();
        var lm = makeBase(site =>
        {
            if (!targets.Contains(site.Name)) return new Linear(site, dtype, device);
            var perAdapter = adapters.Select(a => a.Weights.TryGetValue(site.Key, out var w)
                ? ((Tensor, Tensor, double)?)(w.A, w.B, a.Config.Scale) : null).ToList();
            return MeteoraLinear.Create(site, perAdapter, routing, dtype, adapterDtype ?? dtype, device);
        });
        return new MeteoraModel(lm, routing, adapters, targets);
    }

    /// <summary>Sets top-k, temperature and strategy for the next calls (null keeps the current value).</summary>
    public void Configure(int? topK = null, double? temperature = null, MixingStrategy? strategy = null)
    {
        if (topK is { } k)
        {
            if (k < 1 || k > AdapterNames.Count) throw new MeteoraException($"--top-k: {k} must be between 1 and the {AdapterNames.Count} adapters");
            Routing.TopK = k;
        }
        if (temperature is { } t) Routing.Temperature = t;
        if (strategy is { } s) Routing.Strategy = s;
    }

    /// <summary>Reads gates.safetensors: one (N, in) gate per MeteoRA projection.</summary>
    public void LoadGates(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        using var noGrad = no_grad();
        foreach (var p in Projections)
        {
            var entry = file.Get(MeteoraCheckpoint.GateKey(p.Site.Key));
            if (entry.Shape.Length != 2 || entry.Shape[0] != AdapterNames.Count || entry.Shape[1] != p.Site.InFeatures)
                throw new MeteoraException(entry.Shape.Length == 2 && entry.Shape[1] == p.Site.InFeatures
                    ? $"{path}: gate '{entry.Name}' has {entry.Shape[0]} rows but the checkpoint lists {AdapterNames.Count} adapters"
                    : $"{path}: gate '{entry.Name}' has shape {entry.ShapeText} but {p.Site.Name} takes {p.Site.InFeatures} inputs (expected ({AdapterNames.Count}, {p.Site.InFeatures}))");
            file.ReadInto(entry.Name, p.moe_gate);
        }
        SyncGates();
    }

    /// <summary>Refreshes the fused copies of the gates after <c>moe_gate</c> was loaded, trained or edited.</summary>
    public void SyncGates()
    {
        foreach (var p in Projections) p.SyncFusedGate();
    }

    /// <summary>
    /// The adapters as they are now in the stacks (after training them), as float32 LoRA adapters with the
    /// original configs. Projections an adapter did not target stay absent.
    /// </summary>
    public List<LoraAdapter> CurrentAdapters()
    {
        var result = new List<LoraAdapter>();
        for (int i = 0; i < Adapters.Count; i++)
        {
            var weights = new Dictionary<string, (Tensor A, Tensor B)>();
            foreach (var p in Projections.Where(p => p.Adapters.Ranks[i] > 0))
                weights[p.Site.Key] = p.Adapters.Unstack(i);
            result.Add(new LoraAdapter(Adapters[i].Name, Adapters[i].Folder, Adapters[i].Config, weights));
        }
        return result;
    }

    /// <summary>
    /// Writes a checkpoint folder: config, gates and, when <paramref name="selfContained"/>, the adapters as they
    /// are in the stacks now (so adapters trained with the gates are kept). Each file is written atomically and the
    /// config last, which commits the save; a previous save's adapters.safetensors is removed first when this save
    /// embeds none (the loader reads it only for adapters without a path anyway). Other files in the folder (training
    /// logs) are left alone.
    /// </summary>
    public void Save(string folder, string? baseModel, bool selfContained, IReadOnlyList<string?>? adapterPaths = null)
    {
        Directory.CreateDirectory(folder);
        string stale = Path.Combine(folder, MeteoraCheckpoint.AdaptersFile);
        if (!selfContained && File.Exists(stale)) File.Delete(stale);
        MeteoraCheckpoint.SaveGates(folder, Projections.Select(p => (p.Site.Key, (Tensor)p.moe_gate)));
        if (selfContained)
        {
            var current = CurrentAdapters();
            try { MeteoraCheckpoint.SaveAdapters(folder, current); }
            finally { current.ForEach(a => a.Dispose()); }
        }
        new MeteoraCheckpointConfig
        {
            BaseModel = baseModel,
            Adapters = AdapterNames.Select((n, i) => new MeteoraAdapterRef(n, selfContained ? null : adapterPaths?[i])).ToList(),
            TargetModules = TargetModules, TopK = Routing.TopK, Temperature = Routing.Temperature,
        }.Save(folder);
    }

    /// <summary>Logits (B, T, V) of a forward over unpadded rows <paramref name="ids"/> (B, T).</summary>
    public Tensor Forward(Tensor ids) => Model.forward(ids);

    /// <summary>Greedy or sampled generation with the current routing settings.</summary>
    public int[][] Generate(IReadOnlyList<int[]> prompts, GenerationOptions options, Action<int, int[]>? onStep = null) =>
        new TextGenerator(Model).Generate(prompts, options, onStep);

    /// <summary>Attaches <paramref name="recorder"/> to every MeteoRA projection (null detaches).</summary>
    public void Attach(RoutingRecorder? recorder)
    {
        foreach (var p in Projections) p.Recorder = recorder;
    }

    public void Dispose()
    {
        Model.Dispose();
        foreach (var a in Adapters) a.Dispose();
    }
}
