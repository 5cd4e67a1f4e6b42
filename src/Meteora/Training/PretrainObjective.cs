using Meteora.IO;
using Meteora.Llama;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>Full-parameter causal-LM training of a base model (the built-in tiny base); the artifact is a Hugging Face folder.</summary>
public sealed class PretrainObjective : ITrainingObjective
{
    private readonly LlamaForCausalLM _lm;
    private readonly Action<string> _writeExtras;

    /// <param name="lm">the model; every parameter is trained</param>
    /// <param name="writeExtras">writes the non-weight files (config.json, tokenizer) into the artifact folder</param>
    public PretrainObjective(LlamaForCausalLM lm, Action<string> writeExtras)
    {
        _lm = lm; _writeExtras = writeExtras;
        Parameters = lm.parameters().ToList();
    }

    public IReadOnlyList<Parameter> Parameters { get; }

    public (Tensor Loss, IReadOnlyDictionary<string, double> Parts) Loss(TrainingBatch batch, bool training)
    {
        _lm.train(training);
        var loss = LanguageModelLoss.CrossEntropy(_lm.forward(batch.Ids), batch.Labels);
        return (loss, new Dictionary<string, double> { ["loss"] = loss.item<float>() });
    }

    public IEnumerable<KeyValuePair<string, Tensor>> TrainableState() =>
        _lm.BaseWeights().Select(w => new KeyValuePair<string, Tensor>(w.Name, w.Tensor));

    public void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state)
    {
        using var noGrad = no_grad();
        foreach (var (name, t) in _lm.BaseWeights())
            t.copy_(state.TryGetValue(name, out var v) ? v : throw new MeteoraException($"checkpoint: missing tensor '{name}'"));
    }

    public void SaveArtifact(string folder)
    {
        _writeExtras(folder);
        SafeTensorsWriter.Write(Path.Combine(folder, "model.safetensors"), TrainableState(), new Dictionary<string, string> { ["format"] = "pt" });
    }
}
