using Meteora.IO;
using Meteora.Llama;
using Meteora.Tokenization;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>
/// Makes the project's own tiny base model: a small LLaMA with the byte-level tokenizer, randomly initialised and
/// pretrained briefly on <see cref="GenericCorpus"/> documents (never on the tasks' formats), saved as a normal Hugging Face
/// folder so every code path that reads a base reads this one the same way.
/// </summary>
public static class TinyBaseBuilder
{
    /// <summary>The default architecture: 4 layers, hidden 128, 4 heads / 2 KV heads, byte vocabulary.</summary>
    public static LlamaConfig DefaultConfig => new()
    {
        HiddenSize = 128, IntermediateSize = 352, NumHiddenLayers = 4, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        HeadDim = 32, VocabSize = ByteLevelTokenizerWriter.VocabSize, RmsNormEps = 1e-5, MaxPositionEmbeddings = 2048,
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
    /// documents, each filling most of <see cref="TrainingOptions.MaxSeqLen"/> (one byte per token); returns the
    /// first and last eval loss.
    /// </summary>
    public static (double InitialLoss, double FinalLoss) Build(string outDir, LlamaConfig config, TrainingOptions options,
        int documents, Device device, ITrainingProgress? progress = null, CancellationToken cancel = default)
    {
        string tokenizerDir = Path.Combine(outDir, ".tokenizer");
        ByteLevelTokenizerWriter.Write(tokenizerDir);
        using var tokenizer = HfTokenizer.Load(tokenizerDir);
        var rng = new Random(options.Seed);
        // BOS + text + EOS: leave two tokens of the length budget to the specials.
        var docs = Enumerable.Range(0, documents).Select(_ => GenericCorpus.Document(rng, options.MaxSeqLen - 2)).ToList();
        var encoder = new SequenceEncoder(tokenizer, options.MaxSeqLen, responseOnly: false, eosId: 1);
        var examples = docs.Select(d => encoder.Encode(new TaskExample(d, ""))).ToList();
        int held = Math.Max(1, examples.Count / 20);

        using var lm = new LlamaForCausalLM(config, ScalarType.Float32, device);
        lm.InitializeRandom(options.Seed);
        void WriteExtras(string folder)
        {
            Directory.CreateDirectory(folder);
            AtomicFile.WriteAllText(Path.Combine(folder, "config.json"), config.ToJson());
            AtomicFile.WriteAllText(Path.Combine(folder, "generation_config.json"), """{"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 2}""");
            foreach (var f in new[] { "tokenizer.json", "tokenizer_config.json" })
                File.Copy(Path.Combine(tokenizerDir, f), Path.Combine(folder, f), overwrite: true);
        }
        var loop = new TrainingLoop(new PretrainObjective(lm, WriteExtras), options, outDir, config.PadTokenId ?? 2, device, progress);
        loop.Run(examples.Skip(held).ToList(), examples.Take(held).ToList(), cancel);
        Directory.Delete(tokenizerDir, true);
        return (loop.InitialEvaluation?["eval_loss"] ?? double.NaN, loop.LastEvaluation.GetValueOrDefault("eval_loss", double.NaN));
    }
}
