using Meteora.Generation;
using Meteora.Llama;
using Meteora.Lora;
using Meteora.Moe;
using Meteora.Tokenization;
using static TorchSharp.torch;

namespace Meteora.Serving;

/// <summary>
/// What a <see cref="ServingEngine"/> serves: a base model, optionally with adapters embedded as a MeteoRA model
/// (trained gates, or Arrow prototypes when only adapters are given), and its tokenizer. Model names, as clients
/// use them: <see cref="MeteoraName"/> (the gates route), each adapter's name (that adapter alone) and
/// <see cref="BaseName"/> (no adapter).
/// </summary>
public sealed class ServingModel : IDisposable
{
    public const string MeteoraName = "meteora";
    public const string BaseName = "base";

    public LlamaForCausalLM Lm { get; }
    /// <summary>The adapters' model (null when only the base is served).</summary>
    public MeteoraModel? Meteora { get; }
    public HfTokenizer Tokenizer { get; }
    /// <summary>Where the base was loaded from (for /v1/models).</summary>
    public string BaseFolder { get; }
    /// <summary>How <see cref="MeteoraName"/> routes: "gates" (a trained checkpoint) or "arrow" (adapters only).</summary>
    public string Routing { get; }
    public IReadOnlyList<int> EosIds { get; }
    /// <summary>Top-k and temperature of <see cref="MeteoraName"/> when a request does not set them.</summary>
    public int DefaultTopK { get; }
    public double DefaultTemperature { get; }
    public IReadOnlyList<string> AdapterNames => Meteora?.AdapterNames ?? [];

    public ServingModel(LlamaForCausalLM lm, MeteoraModel? meteora, HfTokenizer tokenizer, string baseFolder, string routing)
    {
        Lm = lm; Meteora = meteora; Tokenizer = tokenizer; BaseFolder = baseFolder; Routing = routing;
        EosIds = SpecialTokens.EosIds(lm.Config, tokenizer);
        DefaultTopK = meteora?.Routing.TopK ?? 1;
        DefaultTemperature = meteora?.Routing.Temperature ?? 1.0;
    }

    /// <summary>
    /// Loads what <c>meteora serve</c> serves: the base at <paramref name="baseFolder"/> with a MeteoRA checkpoint
    /// (<paramref name="meteoraFolder"/>: its gates route), or with every PEFT adapter folder directly under
    /// <paramref name="adaptersDir"/> (sorted by name; no trained gates, so <see cref="MeteoraName"/> routes by
    /// Arrow), or alone. <paramref name="topK"/> / <paramref name="temperature"/> override the defaults.
    /// </summary>
    public static ServingModel Load(string baseFolder, string? meteoraFolder, string? adaptersDir, Device device, ScalarType dtype,
        int? topK = null, double? temperature = null, MixingStrategy strategy = MixingStrategy.Auto)
    {
        if (meteoraFolder is not null && adaptersDir is not null) throw new MeteoraException("--meteora and --adapters-dir exclude each other");
        var tokenizer = HfTokenizer.Load(baseFolder);
        MeteoraModel? meteora = null;
        try
        {
            if (meteoraFolder is not null)
            {
                meteora = MeteoraModel.Load(baseFolder, meteoraFolder, device, dtype);
                meteora.Configure(topK, temperature, strategy);
                return new ServingModel(meteora.Model, meteora, tokenizer, baseFolder, "gates");
            }
            if (adaptersDir is not null)
            {
                var folders = LoraAdapter.FoldersIn(adaptersDir).Select(d => (Path.GetFileName(d), d)).ToList();
                var arrow = ArrowModel.Load(baseFolder, folders, device, dtype, topK ?? Math.Min(ArrowModel.DefaultTopK, folders.Count), temperature ?? 1.0);
                meteora = arrow.Meteora;
                meteora.Configure(strategy: strategy);
                return new ServingModel(meteora.Model, meteora, tokenizer, baseFolder, "arrow");
            }
            if (topK is not null || temperature is not null) throw new MeteoraException("--top-k and --temperature need --meteora or --adapters-dir");
            return new ServingModel(LlamaLoader.Load(baseFolder, device, dtype), null, tokenizer, baseFolder, "none");
        }
        catch
        {
            meteora?.Dispose();
            tokenizer.Dispose();
            throw;
        }
    }

    /// <summary>Every model name a request may give, <see cref="MeteoraName"/> first when there are adapters.</summary>
    public IEnumerable<string> ModelNames =>
        (Meteora is null ? [] : new[] { MeteoraName }).Concat(AdapterNames).Append(BaseName);

    /// <summary>
    /// The routing for model name <paramref name="model"/> and the request's routing fields (null = the defaults).
    /// Throws <see cref="ServingRequestException"/> with code <c>model_not_found</c> for unknown names; the
    /// engine checks the values when the request is submitted.
    /// </summary>
    public RouteChoice Choose(string model, int? topK, double? temperature, bool returnRouting)
    {
        if (model == BaseName) return RouteChoice.Base with { ReturnRouting = returnRouting && Meteora is not null };
        if (Meteora is not null && model == MeteoraName)
        {
            return new RouteChoice(RouteMode.Gates, -1, topK ?? DefaultTopK, temperature ?? DefaultTemperature, returnRouting);
        }
        int index = AdapterNames.ToList().IndexOf(model);
        if (index < 0)
            throw new ServingRequestException($"The model '{model}' does not exist; this server has {string.Join(", ", ModelNames)}", "model", "model_not_found");
        return new RouteChoice(RouteMode.Adapter, index, 1, 1.0, returnRouting);
    }

    public void Dispose()
    {
        if (Meteora is not null) Meteora.Dispose(); else Lm.Dispose();
        Tokenizer.Dispose();
    }
}
