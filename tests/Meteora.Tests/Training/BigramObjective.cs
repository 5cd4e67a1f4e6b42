using Meteora.IO;
using Meteora.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Meteora.Tests.Training;

/// <summary>
/// A bigram LM (one V × V table): small enough to train in milliseconds, and a real LM loss with per-position
/// weights. Records the gradient each optimiser step used and the rows each micro-batch held.
/// </summary>
public sealed class BigramObjective : ITrainingObjective
{
    public const int Vocab = 11;

    private readonly Parameter _table;
    public List<float[]> Gradients { get; } = [];
    public List<string> Rows { get; } = [];

    /// <param name="initScale">standard deviation of the random starting table</param>
    public BigramObjective(int seed, float initScale = 1)
    {
        using var g = new Generator((ulong)seed);
        using var start = randn(new long[] { Vocab, Vocab }, generator: g);
        _table = new Parameter(start * initScale);
        Parameters = [_table];
    }

    public IReadOnlyList<Parameter> Parameters { get; }

    public (Tensor Loss, IReadOnlyDictionary<string, double> Parts) Loss(TrainingBatch batch, bool training, LossCounts? normalizers = null)
    {
        if (training)
            for (int b = 0; b < batch.Ids.shape[0]; b++) Rows.Add(string.Join(',', batch.Ids[b].data<long>().ToArray().Reverse().SkipWhile(t => t == 0).Reverse()));   // padding (0) off
        var logits = _table.index_select(0, batch.Ids.reshape(-1)).view(batch.Ids.shape[0], batch.Ids.shape[1], Vocab);   // (B, T, V)
        var loss = LanguageModelLoss.CrossEntropy(logits, batch.Labels, batch.LossWeights, normalizers?.LmWeight);
        return (loss, new Dictionary<string, double> { ["loss"] = loss.item<float>() });
    }

    public void AfterOptimizerStep() => Gradients.Add(_table.grad!.data<float>().ToArray());

    public IEnumerable<KeyValuePair<string, Tensor>> TrainableState() => [new("table", _table)];

    public void LoadTrainableState(IReadOnlyDictionary<string, Tensor> state)
    {
        using var noGrad = no_grad();
        _table.copy_(state["table"]);
    }

    public void SaveArtifact(string folder) => SafeTensorsWriter.Write(Path.Combine(folder, "table.safetensors"), TrainableState());

    /// <summary>Sequences of 3–24 tokens (token 0 is padding) with some positions out of the loss and weights 0.1–1.</summary>
    public static List<EncodedExample> Data(int count, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(i =>
        {
            int n = rng.Next(3, 25);
            var ids = Enumerable.Range(0, n).Select(_ => rng.Next(1, Vocab)).ToArray();
            var mask = Enumerable.Range(0, n).Select(t => t + 1 < n && rng.NextDouble() < 0.7).ToArray();
            var weights = Enumerable.Range(0, n).Select(_ => (float)(0.1 + 0.9 * rng.NextDouble())).ToArray();
            return new EncodedExample(ids, mask, i % 3, false) { LossWeights = weights };
        }).ToList();
    }
}
