using System.Text;
using Meteora.Data;
using Meteora.Llama;
using Meteora.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Training;

/// <summary>What the base-model probes measured (saved as <c>probes.json</c> beside the weights).</summary>
/// <param name="CopyAccuracy">held-out share of restated random-letter characters predicted right (teacher forced, argmax)</param>
/// <param name="CopyChance">the same share for the first listing, where nothing earlier predicts them (the no-copy baseline)</param>
/// <param name="LossByPosition">next-token cross-entropy by position bucket: (first position, last position, mean loss)</param>
/// <param name="Restatement">
/// composite-shaped prompts over a line format the corpus never has, after 0, 1 and 2 solved blocks: the share of the
/// last block's problem-line tokens restated right on its answer lines, and the share of those lines restated right
/// in every token (teacher forced) — a composite answer needs the whole line
/// </param>
public sealed record BaseProbeResult(double CopyAccuracy, double CopyChance, IReadOnlyList<(int From, int To, double Loss)> LossByPosition,
    IReadOnlyList<(int Shots, double Accuracy, double Lines)> Restatement)
{
    /// <summary>Three human-readable lines.</summary>
    public override string ToString() =>
        $"copy accuracy {CopyAccuracy:P1} (first listing, no copy possible: {CopyChance:P1})\n" +
        "composite-style restatement (tokens / whole lines): " + string.Join(", ", Restatement.Select(r => $"{r.Shots} shots {r.Accuracy:P1} / {r.Lines:P0}")) + "\n" +
        "loss by position: " + string.Join(", ", LossByPosition.Select(b => $"{b.From}–{b.To} {b.Loss:F2}"));

    /// <summary>The result as probes.json holds it (NaN, for a probe the context was too short for, as null).</summary>
    public object ToJson(int contextLength, double heldOutLoss) => new
    {
        copy_accuracy = Finite(CopyAccuracy), copy_chance = Finite(CopyChance), context_length = contextLength,
        restatement = Restatement.Select(r => new { shots = r.Shots, accuracy = Finite(r.Accuracy), lines = Finite(r.Lines) }),
        loss_by_position = LossByPosition.Select(b => new { from = b.From, to = b.To, loss = Finite(b.Loss) }),
        held_out_loss = Finite(heldOutLoss),
    };

    /// <summary>JSON has no NaN: a probe that could not run (a context too short for it) is written as null.</summary>
    internal static double? Finite(double x) => double.IsFinite(x) ? x : null;
}

/// <summary>
/// Probes of a pretrained base that tell whether it can serve composite prompts: (1) <b>copying</b> — a numbered list
/// of random letter groups, other lines, then the list again: how many characters of the restated list the model
/// predicts (it can only by finding and copying the first listing); (2) <b>long context</b> — next-token loss by
/// position over held-out documents of the full context length, to show the model does not degrade late in the window;
/// (3) <b>restatement</b> — the composite prompt's shape (problems, then answers that restate each problem first) over
/// made-up "word: letters =>" lines, after 0, 1 and 2 solved blocks: what composite evaluation needs of the base before
/// any adapter is involved. Documents come from <see cref="GenericCorpus"/> with a seed disjoint from training.
/// </summary>
public static class BaseProbes
{
    /// <summary>Runs every probe on <paramref name="lm"/> (eval mode, no gradients) for a context of <paramref name="contextLength"/> tokens.</summary>
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
        var restatement = new[] { 0, 1, 2 }.Select(shots =>
        {
            var (tokens, lines) = Restate(lm, tokenizer, new Random(seed + shots), shots, contextLength);
            return (shots, tokens, lines);
        }).ToList();
        return new BaseProbeResult(total > 0 ? right / (double)total : double.NaN, totalFirst > 0 ? rightFirst / (double)totalFirst : double.NaN,
            byPosition, restatement);
    }

    /// <summary>
    /// Teacher-forced shares of the last block's problem-line tokens, and of its whole lines, predicted right on its
    /// answer lines, over 12 composite-shaped prompts (the composite-prompt layout, <see cref="ProblemLists"/>) of three problems with
    /// <paramref name="shots"/> solved blocks in front.
    /// </summary>
    private static (double Tokens, double Lines) Restate(LlamaForCausalLM lm, HfTokenizer tokenizer, Random rng, int shots, int contextLength)
    {
        (long Right, long Total) acc = (0, 0);
        int linesRight = 0, lines = 0;
        string Problem() => $"{SuiteSkills.Word(rng, 2, 3)}: {SuiteSkills.Letters(rng, 3, 6)} =>";
        for (int p = 0; p < 12; p++)
        {
            var sb = new StringBuilder().AppendLine(ProblemLists.Instruction);
            var starts = new List<int>();   // character offsets of the last block's restated problems
            string[] final = [];
            for (int b = 0; b <= shots; b++)
            {
                string[] problems = [Problem(), Problem(), Problem()];
                ProblemLists.AppendProblems(sb, problems);
                sb.AppendLine(ProblemLists.AnswersHeader);
                starts.Clear();
                for (int i = 0; i < problems.Length; i++)
                {
                    string line = ProblemLists.AnswerLine(i + 1, problems[i], SuiteSkills.Letters(rng, 2, 5));
                    starts.Add(sb.Length + line.IndexOf(problems[i], StringComparison.Ordinal));
                    sb.AppendLine(line);
                }
                final = problems;
            }
            string text = sb.ToString();
            var ids = tokenizer.Encode(text);
            if (ids.Length > contextLength) continue;
            var predicted = Predict(lm, ids);
            for (int i = 0; i < final.Length; i++)
            {
                var line = Score(tokenizer, ids, predicted, tokenizer.Encode(text[..starts[i]]).Length, final[i], (0, 0), lettersOnly: false);
                acc = (acc.Right + line.Right, acc.Total + line.Total);
                lines++;
                if (line.Right == line.Total) linesRight++;
            }
        }
        return acc.Total > 0 ? (acc.Right / (double)acc.Total, linesRight / (double)lines) : (double.NaN, double.NaN);
    }

    /// <summary>Argmax next-token prediction at every position: predicted[t] is the guess for ids[t + 1].</summary>
    private static long[] Predict(LlamaForCausalLM lm, int[] ids)
    {
        using var scope = NewDisposeScope();
        var x = tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length], device: lm.Device);
        return lm.forward(x)[0].argmax(-1).cpu().data<long>().ToArray();                          // (T,)
    }

    /// <summary>
    /// Adds to <paramref name="acc"/> the teacher-forced guesses over the tokens of <paramref name="span"/>, which
    /// starts at token position <paramref name="start"/> of <paramref name="ids"/>; with <paramref name="lettersOnly"/>,
    /// only its lower-case letter tokens count (not numbering, spaces or newlines).
    /// </summary>
    private static (long Right, long Total) Score(HfTokenizer tokenizer, int[] ids, long[] predicted, int start, string span,
        (long Right, long Total) acc, bool lettersOnly = true)
    {
        var spanIds = tokenizer.Encode(span, addSpecialTokens: false);
        for (int j = 0; j < spanIds.Length && start + j < ids.Length; j++)
        {
            if (lettersOnly && tokenizer.Decode([spanIds[j]]) is var piece && (piece.Length == 0 || !piece.All(char.IsAsciiLetterLower))) continue;
            int t = start + j;
            acc.Total++;
            if (predicted[t - 1] == ids[t]) acc.Right++;
        }
        return acc;
    }
}
