using System.Text;
using Meteora.Evaluation;
using Meteora.Llama;
using Meteora.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>What the base-model probes measured (saved as <c>probes.json</c> beside the weights).</summary>
/// <param name="CopyAccuracy">held-out share of restated random-letter characters predicted right (teacher forced, argmax)</param>
/// <param name="CopyChance">the same share for the first listing, where nothing earlier predicts them (the no-copy baseline)</param>
/// <param name="LossByPosition">next-token cross-entropy by position bucket: (first position, last position, mean loss)</param>
public sealed record BaseProbeResult(double CopyAccuracy, double CopyChance, IReadOnlyList<(int From, int To, double Loss)> LossByPosition)
{
    /// <summary>Two human-readable lines.</summary>
    public override string ToString() =>
        $"copy accuracy {CopyAccuracy:P1} (first listing, no copy possible: {CopyChance:P1})\n" +
        "loss by position: " + string.Join(", ", LossByPosition.Select(b => $"{b.From}–{b.To} {b.Loss:F2}"));
}

/// <summary>
/// Probes of a pretrained base that tell whether it can serve composite prompts: (1) <b>copying</b> — a numbered list
/// of random letter groups, other lines, then the list again: how many characters of the restated list the model
/// predicts (it can only by finding and copying the first listing); (2) <b>long context</b> — next-token loss by
/// position over held-out documents of the full context length, to show the model does not degrade late in the window.
/// Documents come from <see cref="GenericCorpus"/> with a seed disjoint from training.
/// </summary>
public static class BaseProbes
{
    public static BaseProbeResult Run(LlamaForCausalLM lm, HfTokenizer tokenizer, int contextLength, int seed = 9_999, int documents = 16, int bucket = 128)
    {
        using var noGrad = no_grad();
        lm.eval();
        var rng = new Random(seed);
        // (1) Copying: filler lines up to about half the context, then the list, 0–2 lines, its restatement.
        long right = 0, total = 0, rightFirst = 0, totalFirst = 0;
        for (int d = 0; d < documents; d++)
        {
            var items = Enumerable.Range(0, rng.Next(3, 9))
                .Select(_ => string.Join(' ', Enumerable.Range(0, rng.Next(2, 5)).Select(_ => SuiteSkills.Letters(rng, 3, 6)))).ToList();
            string list = string.Concat(items.Select((it, i) => $"{i + 1}. {it}\n"));
            var filler = new StringBuilder();
            while (filler.Length < contextLength / 2 - 200) filler.Append(GenericCorpus.Line(rng)).Append('\n');
            string prefix = filler + "items:\n";
            string middle = list + string.Concat(Enumerable.Range(0, rng.Next(0, 3)).Select(_ => GenericCorpus.Line(rng) + "\n")) + "again:\n";
            string text = prefix + middle + list;
            var ids = tokenizer.Encode(text);
            if (ids.Length > contextLength) continue;
            // Character offsets → token positions: the tokenizer is byte-level for the built-in base, but count
            // through the tokenizer so any tokenizer works: score tokens of the letter groups only.
            var predicted = Predict(lm, ids);
            int firstStart = tokenizer.Encode(prefix).Length, copyStart = tokenizer.Encode(prefix + middle).Length;
            (right, total) = Score(tokenizer, ids, predicted, copyStart, list, (right, total));
            (rightFirst, totalFirst) = Score(tokenizer, ids, predicted, firstStart, list, (rightFirst, totalFirst));
        }

        // (2) Loss by position over held-out documents filling the context.
        var docs = new GeneratedDocuments(tokenizer, documents, first: int.MaxValue / 2, seed, contextLength, eosId: lm.Config.EosTokenIds.FirstOrDefault(1));
        int buckets = (contextLength + bucket - 1) / bucket;
        var sum = new double[buckets];
        var count = new long[buckets];
        for (int d = 0; d < docs.Count; d++)
        {
            using var scope = NewDisposeScope();
            var ids = docs[d].Ids;
            var x = tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length], device: lm.Device);
            var logits = lm.forward(x).to(ScalarType.Float32)[0];                                  // (T, V)
            var nll = nn.functional.cross_entropy(logits[..^1], x[0, 1..], reduction: nn.Reduction.None).cpu().data<float>().ToArray(); // (T-1,)
            for (int t = 0; t < nll.Length; t++) { sum[t / bucket] += nll[t]; count[t / bucket]++; }
        }
        var byPosition = Enumerable.Range(0, buckets).Where(b => count[b] > 0)
            .Select(b => (b * bucket, Math.Min((b + 1) * bucket, contextLength) - 1, sum[b] / count[b])).ToList();
        return new BaseProbeResult(total > 0 ? right / (double)total : double.NaN, totalFirst > 0 ? rightFirst / (double)totalFirst : double.NaN, byPosition);
    }

    /// <summary>Argmax next-token prediction at every position: predicted[t] is the guess for ids[t + 1].</summary>
    private static long[] Predict(LlamaForCausalLM lm, int[] ids)
    {
        using var scope = NewDisposeScope();
        var x = tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length], device: lm.Device);
        return lm.forward(x)[0].argmax(-1).cpu().data<long>().ToArray();                          // (T,)
    }

    /// <summary>Counts right guesses over the list's letter tokens, the list starting at token position <paramref name="start"/>.</summary>
    private static (long Right, long Total) Score(HfTokenizer tokenizer, int[] ids, long[] predicted, int start, string list, (long Right, long Total) acc)
    {
        var listIds = tokenizer.Encode(list, addSpecialTokens: false);
        for (int j = 0; j < listIds.Length && start + j < ids.Length; j++)
        {
            string piece = tokenizer.Decode([listIds[j]]);
            if (piece.Length == 0 || !piece.All(char.IsAsciiLetterLower)) continue;   // numbering, spaces, newlines
            int t = start + j;
            acc.Total++;
            if (predicted[t - 1] == ids[t]) acc.Right++;
        }
        return acc;
    }
}
