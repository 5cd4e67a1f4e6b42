using Meteora.Llama;
using Meteora.Lora;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>Causal-LM cross-entropy of a model whose <see cref="LoraLinear"/> A and B are the only trainable weights.</summary>
public sealed class LoraObjective : ITrainingObjective
{
    private readonly LlamaForCausalLM _lm;
    private readonly LoraConfig _config;
    private readonly List<LoraLinear> _layers;

    public LoraObjective(LlamaForCausalLM lm, LoraConfig config)
    {
        _lm = lm; _config = config;
        _layers = lm.Projections().OfType<LoraLinear>().ToList();
        if (_layers.Count == 0) throw new MeteoraException("LoRA training: the target modules select no projection of this model");
        Parameters = _layers.SelectMany(l => new[] { l.lora_A, l.lora_B }).ToList();
    }

    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>Rank, alpha, scaling, dropout, targets and the base's dtype: resuming with any of them changed is refused.</summary>
    public string Description =>
        $"lora r={_config.R} α={_config.LoraAlpha:R} rslora={_config.UseRsLora} dropout={_config.LoraDropout:R} " +
        $"targets={_config.TargetRegex ?? string.Join(',', _config.TargetModules)} layers={(_config.LayersToTransform is { } l ? string.Join(',', l) : "all")} dtype={_lm.DType}";

    /// <summary>PEFT's initialisation: A ~ U(±1/√in) (Kaiming-uniform with a = √5), B = 0, so training starts at the base.</summary>
    public void Initialize(int seed)
    {
        using var noGrad = no_grad();
        using var gen = new Generator((ulong)seed);
        foreach (var l in _layers)
        {
            double bound = 1.0 / Math.Sqrt(l.Site.InFeatures);
            using var a = empty(l.lora_A.shape, ScalarType.Float32).uniform_(-bound, bound, gen);
            l.lora_A.copy_(a);
            l.lora_B.zero_();
        }
    }

    public (Tensor Loss, IReadOnlyDictionary<string, double> Parts) Loss(TrainingBatch batch, bool training, LossCounts? normalizers = null)
    {
        _lm.train(training);
        var logits = _lm.forward(batch.Ids);                                           // (B, T, V)
        var loss = LanguageModelLoss.CrossEntropy(logits, batch.Labels, batch.LossWeights, normalizers?.LmWeight);
        return (loss, new Dictionary<string, double> { ["loss"] = loss.item<float>() });
    }

    public IEnumerable<KeyValuePair<string, Tensor>> TrainableState() =>
        _layers.SelectMany(l => new KeyValuePair<string, Tensor>[]
        {
            new(LoraAdapter.TensorName(l.Site.Key, 'A'), l.lora_A), new(LoraAdapter.TensorName(l.Site.Key, 'B'), l.lora_B),
        });

    public void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state)
    {
        using var noGrad = no_grad();
        foreach (var l in _layers)
        {
            l.lora_A.copy_(Get(state, LoraAdapter.TensorName(l.Site.Key, 'A')));
            l.lora_B.copy_(Get(state, LoraAdapter.TensorName(l.Site.Key, 'B')));
        }
    }

    private static Tensor Get(IReadOnlyDictionary<string, Tensor> state, string name) =>
        state.TryGetValue(name, out var t) ? t : throw new MeteoraException($"checkpoint: missing tensor '{name}'");

    public void SaveArtifact(string folder) => LoraAdapter.Save(folder, _config, LoraModel.Weights(_lm));
}
