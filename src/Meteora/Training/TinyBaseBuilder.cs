using System.Diagnostics;
using System.Text.Json;
using Meteora.IO;
using Meteora.Llama;
using Meteora.Reporting;
using Meteora.Tokenization;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>What a base build produced: held-out loss before and after, the probes, and the training time.</summary>
public sealed record BaseBuildResult(TrainingOutcome Outcome, double InitialLoss, double FinalLoss, BaseProbeResult? Probes, double TrainSeconds);

/// <summary>
/// Makes the project's own base model: a small LLaMA with the byte-level tokenizer, randomly initialised and
/// pretrained on <see cref="GenericCorpus"/> documents generated on demand (never on the tasks' formats), saved as a
/// normal Hugging Face folder (sharded safetensors when large) so every code path that reads a base reads this one
/// the same way. On CUDA it trains in bfloat16 with float32 master weights (<see cref="PretrainObjective"/>);
/// runs are resumable like every other training. At the end the probes (<see cref="BaseProbes"/>) run and are
/// saved as <c>probes.json</c>; with a <see cref="BaseCardInfo"/> the folder also gets its model card and seal.
/// </summary>
public static class TinyBaseBuilder
{
    /// <summary>The CPU demo's former architecture: 4 layers, hidden 128, 4 heads / 2 KV heads, byte vocabulary.</summary>
    public static LlamaConfig DefaultConfig => new()
    {
        HiddenSize = 128, IntermediateSize = 352, NumHiddenLayers = 4, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        HeadDim = 32, VocabSize = ByteLevelTokenizerWriter.VocabSize, RmsNormEps = 1e-5, MaxPositionEmbeddings = 4096,
        Rope = new RopeParameters(10000.0), BosTokenId = 0, EosTokenIds = [1], PadTokenId = 2,
    };

    /// <summary>
    /// The default architecture with other sizes; checks that they make a valid model (positive sizes, heads that
    /// divide the width, key/value heads that divide the heads, an even head size for the rotary embedding).
    /// </summary>
    public static LlamaConfig Config(int layers, int hidden, int intermediate, int heads, int kvHeads)
    {
        if (layers < 1 || hidden < 1 || intermediate < 1 || heads < 1 || kvHeads < 1)
            throw new MeteoraException("make-base: --layers, --hidden-size, --intermediate-size, --heads and --kv-heads must be ≥ 1");
        if (hidden % heads != 0 || (hidden / heads) % 2 != 0)
            throw new MeteoraException($"make-base: --hidden-size {hidden} must split into {heads} heads of an even size");
        if (heads % kvHeads != 0) throw new MeteoraException($"make-base: --kv-heads {kvHeads} must divide --heads {heads}");
        return DefaultConfig with
        {
            NumHiddenLayers = layers, HiddenSize = hidden, IntermediateSize = intermediate, NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads, HeadDim = hidden / heads,
        };
    }

    /// <summary>
    /// Builds and pretrains the base into <paramref name="outDir"/> on <paramref name="documents"/> generated
    /// documents, each filling <see cref="TrainingOptions.MaxSeqLen"/> (one byte per token), in
    /// <paramref name="dtype"/> (bfloat16/float16: mixed precision with float32 masters). Held-out loss comes
    /// from 64 further documents. Returns the held-out loss before and after and, for a completed run, the probes.
    /// </summary>
    public static BaseBuildResult Build(string outDir, LlamaConfig config, TrainingOptions options, int documents, Device device,
        ScalarType dtype = ScalarType.Float32, ITrainingProgress? progress = null, CancellationToken cancel = default,
        long maxShardBytes = 0, BaseCardInfo? card = null)
    {
        progress ??= new SilentProgress();
        if (options.MaxSeqLen > config.MaxPositionEmbeddings)
            throw new MeteoraException($"--max-seq-len: {options.MaxSeqLen} exceeds the base's {config.MaxPositionEmbeddings} positions");
        Directory.CreateDirectory(outDir);
        string tokenizerDir = Path.Combine(outDir, ".tokenizer");
        ByteLevelTokenizerWriter.Write(tokenizerDir);
        using var tokenizer = HfTokenizer.Load(tokenizerDir);
        int eos = config.EosTokenIds.FirstOrDefault(1);
        var train = new GeneratedDocuments(tokenizer, documents, first: 0, options.Seed, options.MaxSeqLen, eos);
        var held = new GeneratedDocuments(tokenizer, 64, first: documents, options.Seed, options.MaxSeqLen, eos);

        using var lm = new LlamaForCausalLM(config, dtype, device);
        lm.InitializeRandom(options.Seed);
        void WriteExtras(string folder)
        {
            Directory.CreateDirectory(folder);
            AtomicFile.WriteAllText(Path.Combine(folder, "config.json"), config.ToJson());
            AtomicFile.WriteAllText(Path.Combine(folder, "generation_config.json"), """{"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2}""");
            foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json" })
                File.Copy(Path.Combine(tokenizerDir, f), Path.Combine(folder, f), overwrite: true);
        }
        var objective = new PretrainObjective(lm, WriteExtras, maxShardBytes);
        if (objective.MixedPrecision) progress.Message($"mixed precision: {dtype} forward/backward, float32 master weights");
        var loop = new TrainingLoop(objective, options, outDir, config.PadTokenId ?? 2, device, progress);
        var clock = Stopwatch.StartNew();
        var outcome = loop.Run(train, held, cancel);
        double seconds = clock.Elapsed.TotalSeconds;
        double initial = loop.InitialEvaluation?["eval_loss"] ?? FirstEvalLoss(Path.Combine(outDir, "metrics.jsonl")), final = loop.LastEvaluation.GetValueOrDefault("eval_loss", double.NaN);
        BaseProbeResult? probes = null;
        if (outcome == TrainingOutcome.Completed)
        {
            progress.Message("probes: copying and loss by position ...");
            probes = BaseProbes.Run(lm, tokenizer, options.MaxSeqLen);
            AtomicFile.WriteAllText(Path.Combine(outDir, "probes.json"),
                JsonSerializer.Serialize(probes.ToJson(options.MaxSeqLen, final), new JsonSerializerOptions { WriteIndented = true }));
            string metrics = Path.Combine(outDir, "metrics.jsonl");
            if (File.Exists(metrics))
                LossCurvePlot.Write(metrics, Path.Combine(outDir, "loss_curve.png"), ["loss"],
                    $"make-base: {config.NumHiddenLayers} layers × {config.HiddenSize}, {options.MaxSeqLen} tokens per sequence");
            if (card is not null) BaseModelCard.Write(outDir, card, config, options, documents, dtype, device, probes, initial, final, seconds);
        }
        Directory.Delete(tokenizerDir, true);
        return new BaseBuildResult(outcome, initial, final, probes, seconds);
    }

    /// <summary>The held-out loss before the first step, from metrics.jsonl (a resumed run did not evaluate it itself).</summary>
    private static double FirstEvalLoss(string metrics)
    {
        if (!File.Exists(metrics)) return double.NaN;
        foreach (var line in File.ReadLines(metrics))
        {
            try
            {
                using var doc = JsonDocument.Parse(line);
                var r = doc.RootElement;
                if (r.GetProperty("step").GetInt32() == 0 && r.GetProperty("kind").GetString() == "eval" && r.TryGetProperty("eval_loss", out var v))
                    return v.GetDouble();
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException) { }
        }
        return double.NaN;
    }
}
