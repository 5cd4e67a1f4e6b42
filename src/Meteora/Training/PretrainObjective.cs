using Meteora.Runtime;
using Meteora.IO;
using Meteora.Llama;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>
/// Full-parameter causal-LM training of a base model (the built-in tiny base); the artifact is a Hugging Face folder.
/// A float32 model trains its own parameters. A bfloat16 / float16 model trains in mixed precision: forward and
/// backward run in the model's dtype, the optimiser owns float32 master weights (what AdamW updates, what
/// checkpoints and the artifact hold), and after every step the masters are rounded into the model — the usual
/// recipe, so that updates far below bf16's resolution (lr × update ≪ 2⁻⁸ × weight) are not lost. Gradients are
/// accumulated over micro-batches in float32 (<see cref="AfterBackward"/>). float16 would also need loss scaling,
/// which this objective does not do: <c>make-base</c> refuses it.
/// </summary>
public sealed class PretrainObjective : ITrainingObjective
{
    private readonly LlamaForCausalLM _lm;
    private readonly Action<string> _writeExtras;
    private readonly long _maxShardBytes;
    private readonly List<(string Name, Tensor Weight)> _weights;
    /// <summary>float32 masters, one per weight, when the model is not float32; else null.</summary>
    private readonly List<Parameter>? _masters;

    /// <param name="lm">the model; every parameter is trained</param>
    /// <param name="writeExtras">writes the non-weight files (config.json, tokenizer) into the artifact folder</param>
    /// <param name="maxShardBytes">the artifact's weights are split into shards of at most this many bytes (0: one file)</param>
    public PretrainObjective(LlamaForCausalLM lm, Action<string> writeExtras, long maxShardBytes = 0)
    {
        _lm = lm; _writeExtras = writeExtras; _maxShardBytes = maxShardBytes;
        _weights = lm.BaseWeights().ToList();
        if (lm.DType == ScalarType.Float32)
        {
            Parameters = lm.parameters().ToList();
        }
        else
        {
            using var noGrad = no_grad();
            _masters = _weights.Select(w => new Parameter(w.Weight.detach().to(ScalarType.Float32).clone(), requires_grad: true)).ToList();
            foreach (var p in lm.parameters()) p.requires_grad = true;
            Parameters = _masters;
        }
    }

    /// <summary>What the optimiser updates: the model's parameters, or their float32 masters in mixed precision.</summary>
    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>True when the model computes in bfloat16/float16 and the optimiser holds float32 masters.</summary>
    public bool MixedPrecision => _masters is not null;

    public (Tensor Loss, IReadOnlyDictionary<string, double> Parts) Loss(TrainingBatch batch, bool training, LossCounts? normalizers = null)
    {
        _lm.train(training);
        var loss = LanguageModelLoss.CrossEntropy(_lm.forward(batch.Ids), batch.Labels, denominator: normalizers?.LmWeight);   // float32 cross-entropy
        return (loss, new Dictionary<string, double> { ["loss"] = loss.item<float>() });
    }

    /// <summary>Mixed precision: adds this micro-batch's bf16 gradients into the float32 masters' and clears the model's.</summary>
    public void AfterBackward()
    {
        if (_masters is null) return;
        using var noGrad = no_grad();
        for (int i = 0; i < _masters.Count; i++)
        {
            var g = _weights[i].Weight.grad;
            if (g is null) continue;
            if (_masters[i].grad is { } mg) mg.add_(g, HeldScalars.One);   // accumulate in float32 (bf16 → float32 is exact)
            else _masters[i].grad = g.to(ScalarType.Float32);
        }
        _lm.zero_grad();
    }

    /// <summary>Kind and precision: a checkpoint of a float32 run is not resumed in mixed precision, nor the reverse.</summary>
    public string Description => $"pretrain {_lm.DType}{(MixedPrecision ? " with float32 masters" : "")}";

    public void AfterOptimizerStep()
    {
        if (_masters is null) return;
        using var noGrad = no_grad();
        for (int i = 0; i < _masters.Count; i++) _weights[i].Weight.copy_(_masters[i]);   // round to the model's dtype
    }

    /// <summary>The trained weights in float32 (the masters in mixed precision).</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> TrainableState() =>
        _weights.Select((w, i) => new KeyValuePair<string, Tensor>(w.Name, _masters is null ? w.Weight : _masters[i]));

    public void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state)
    {
        using var noGrad = no_grad();
        for (int i = 0; i < _weights.Count; i++)
        {
            var (name, t) = _weights[i];
            var v = state.TryGetValue(name, out var found) ? found : throw new MeteoraException($"checkpoint: missing tensor '{name}'");
            if (!v.shape.SequenceEqual(t.shape))
                throw new MeteoraException($"checkpoint: tensor '{name}' has shape [{string.Join(", ", v.shape)}], the model [{string.Join(", ", t.shape)}]");
            (_masters is null ? t : _masters[i]).copy_(v);
        }
        AfterOptimizerStep();
    }

    public void SaveArtifact(string folder)
    {
        _writeExtras(folder);
        ShardedCheckpointWriter.Write(folder, TrainableState().ToList(), _maxShardBytes);
    }
}
