using Meteora.Generation;
using Meteora.Llama;
using Meteora.Lora;
using Meteora.Tokenization;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>Result of a LoRA training run.</summary>
public sealed record LoraTrainingResult(TrainingOutcome Outcome, int TrainExamples, int Truncated,
    IReadOnlyDictionary<string, double>? InitialEval, IReadOnlyDictionary<string, double> FinalEval);

/// <summary>
/// <c>train-lora</c>: trains a new LoRA adapter on one task folder and writes it as a PEFT folder. The base
/// stays in its dtype (bfloat16 on GPU); adapter weights and AdamW state are float32.
/// </summary>
public static class LoraTrainer
{
    public static LoraTrainingResult Train(string baseFolder, string taskFolder, string outDir, LoraConfig lora,
        TrainingOptions options, Device device, ScalarType dtype, ITrainingProgress? progress = null,
        CancellationToken cancel = default)
    {
        options.Validate();
        progress ??= new SilentProgress();
        var train = TaskData.ReadTrain(taskFolder);
        var test = TaskData.ReadTestIfPresent(taskFolder);
        using var tokenizer = HfTokenizer.Load(baseFolder);
        var config = LlamaConfig.Load(baseFolder);
        int? eos = SpecialTokens.TrainingEos(config, tokenizer);
        var encoder = new SequenceEncoder(tokenizer, options.MaxSeqLen, options.ResponseOnly, eos);
        var trainEncoded = train.Select(e => encoder.Encode(e)).ToList();
        var testEncoded = test?.Select(e => encoder.Encode(e)).ToList();
        int truncated = trainEncoded.Count(e => e.Truncated);
        if (truncated > 0) progress.Message($"truncated {truncated} of {trainEncoded.Count} training sequences to --max-seq-len {options.MaxSeqLen}");
        if (trainEncoded.All(e => e.LossTokens == 0))
            throw new MeteoraException($"{taskFolder}: no training tokens remain after truncation to {options.MaxSeqLen} (raise --max-seq-len)");

        lora = lora with { BaseModelNameOrPath = lora.BaseModelNameOrPath ?? Path.GetFullPath(baseFolder) };
        var sites = LoraAdapter.Sites(config).Where(lora.Targets).Select(s => s.Key).ToHashSet();
        using var lm = LlamaLoader.Load(baseFolder, device, dtype,
            LoraModel.Factory(lora, s => sites.Contains(s.Key), dtype, ScalarType.Float32, device));
        var objective = new LoraObjective(lm, lora);
        objective.Initialize(options.Seed);
        int padId = SpecialTokens.PadId(config, eos);
        var loop = new TrainingLoop(objective, options, outDir, padId, device, progress);
        var outcome = loop.Run(trainEncoded, testEncoded, cancel);
        return new LoraTrainingResult(outcome, trainEncoded.Count, truncated, loop.InitialEvaluation, loop.LastEvaluation);
    }
}
