using Meteora.Data;
using Meteora.Tokenization;

namespace Meteora.Training;

/// <summary>
/// Tokenizes prompt/response pairs for causal-LM training: BOS + prompt, then the response and EOS encoded
/// without special tokens, so the boundary is exact. The loss covers the response (and EOS) only, or every
/// token with <c>responseOnly = false</c>. Sequences longer than the maximum are cut at the end and counted.
/// </summary>
public sealed class SequenceEncoder
{
    private readonly HfTokenizer _tokenizer;
    private readonly int _maxLength;
    private readonly bool _responseOnly;
    private readonly int? _eos;

    public SequenceEncoder(HfTokenizer tokenizer, int maxLength, bool responseOnly, int? eosId)
    {
        if (maxLength < 2) throw new MeteoraException($"--max-seq-len: {maxLength} must be ≥ 2");
        _tokenizer = tokenizer; _maxLength = maxLength; _responseOnly = responseOnly; _eos = eosId;
    }

    /// <param name="example">prompt and response</param>
    /// <param name="task">task index (for gate training)</param>
    /// <param name="context">
    /// text put between BOS and the prompt (<see cref="InContextExamples"/>): it is encoded with the prompt but is in
    /// no loss — the LM loss starts at the prompt (or response) and the gate loss at the prompt's first token
    /// </param>
    public EncodedExample Encode(TaskExample example, int task = 0, string context = "")
    {
        var prompt = _tokenizer.Encode(context + example.Prompt);                        // BOS + context + prompt
        int from = context.Length == 0 ? 0 : _tokenizer.Encode(context).Length - 1;     // last context token predicts the prompt's first
        var response = _tokenizer.Encode(example.Response, addSpecialTokens: false).ToList();
        if (_eos is { } eos) response.Add(eos);
        var ids = prompt.Concat(response).ToArray();
        // mask[t] = the loss includes predicting ids[t+1] from position t.
        var mask = new bool[ids.Length];
        for (int t = from; t + 1 < ids.Length; t++) mask[t] = !_responseOnly || t + 1 >= prompt.Length;
        mask[^1] = false;
        bool truncated = ids.Length > _maxLength;
        if (truncated)
        {
            ids = ids[.._maxLength];
            mask = mask[.._maxLength];
            mask[^1] = false;
        }
        return new EncodedExample(ids, mask, task, truncated) { GateFrom = context.Length == 0 ? 0 : from + 1 };
    }

    /// <summary>
    /// Rounds of problems listed, then restated with their answers (<see cref="RestatedLists"/>): per round the list
    /// lines "i. prompt", then the answer lines "i. prompt" + " response", each ending in a newline (EOS after the
    /// last). The answer lines are in the LM loss — the restated problem at <paramref name="copyWeight"/>, the answer and
    /// the newline that ends the line at 1 — and the list lines only when the loss is not response-only (at
    /// <paramref name="copyWeight"/>). Every token is labelled with its line's task. Leading rounds are dropped while the
    /// sequence is longer than the maximum; a last round that is still too long is cut.
    /// </summary>
    /// <param name="rounds">the problems of each round, with their tasks</param>
    /// <param name="group">the sequence's group for --balance (the task of the example it was built for)</param>
    /// <param name="copyWeight">LM-loss weight of a restated (or, without response-only, listed) problem's tokens</param>
    public EncodedExample Restated(IReadOnlyList<IReadOnlyList<(TaskExample Example, int Task)>> rounds, int group, double copyWeight = 1.0)
    {
        if (rounds.Count == 0 || rounds.Any(r => r.Count == 0)) throw new ArgumentException("nothing to restate", nameof(rounds));
        float copy = (float)copyWeight;
        float? listWeight = _responseOnly ? null : copy;                                  // null: not in the loss
        // Per round: (text, task, loss weight) pieces, tokenized without special tokens; an answer line is two pieces.
        var encoded = rounds.Select(round =>
            round.Select((p, i) => (Text: ProblemLists.ListLine(i + 1, p.Example.Prompt) + "\n", p.Task, Weight: listWeight))
                 .Concat(round.SelectMany((p, i) => new[]
                 {
                     (Text: ProblemLists.ListLine(i + 1, p.Example.Prompt), p.Task, Weight: (float?)copy),
                     (Text: " " + ProblemLists.OneLine(p.Example.Response) + "\n", p.Task, Weight: (float?)1f),
                 }))
                 .Select(l => (Ids: _tokenizer.Encode(l.Text, addSpecialTokens: false), l.Task, l.Weight)).ToList()).ToList();
        var bos = _tokenizer.LeadingSpecialIds;                                           // BOS (or nothing, for a tokenizer without one)
        int first = 0;
        while (first < encoded.Count - 1 && bos.Count + encoded.Skip(first).Sum(r => r.Sum(l => l.Ids.Length)) + 1 > _maxLength) first++;
        var ids = new List<int>(bos);
        var weightOf = new List<float?>(Enumerable.Repeat((float?)null, bos.Count));     // per token: its weight as a target, null = not one
        var tasks = new List<int>(Enumerable.Repeat(encoded[first][0].Task, bos.Count));
        foreach (var piece in encoded.Skip(first).SelectMany(r => r))
        {
            ids.AddRange(piece.Ids);
            weightOf.AddRange(Enumerable.Repeat(piece.Weight, piece.Ids.Length));
            tasks.AddRange(Enumerable.Repeat(piece.Task, piece.Ids.Length));
        }
        if (_eos is { } eos) { ids.Add(eos); weightOf.Add(1f); tasks.Add(tasks[^1]); }
        bool truncated = ids.Count > _maxLength;
        int n = Math.Min(ids.Count, _maxLength);
        var mask = new bool[n];
        var weights = new float[n];
        for (int t = 0; t + 1 < n; t++)                                                   // position t predicts ids[t+1]
        {
            mask[t] = weightOf[t + 1] is not null;
            weights[t] = weightOf[t + 1] ?? 0f;
        }
        return new EncodedExample(ids.Take(n).ToArray(), mask, group, truncated)
        { TokenTasks = tasks.Take(n).ToArray(), LossWeights = copy == 1f ? null : weights };
    }

    /// <summary>
    /// Several examples, of different tasks, as one sequence: BOS, then each example's prompt and response on a line of
    /// its own (a newline between them; EOS only after the last), every position labelled with its example's task, the
    /// loss covering each response (or everything) as <see cref="Encode"/> does. What a composite prompt's answer block
    /// is made of: gates trained on such sequences see the task change mid-sequence. Cut at the maximum length.
    /// </summary>
    public EncodedExample Pack(IReadOnlyList<(TaskExample Example, int Task)> parts)
    {
        if (parts.Count == 0) throw new ArgumentException("nothing to pack", nameof(parts));
        var ids = new List<int>();
        var mask = new List<bool>();
        var tasks = new List<int>();
        for (int i = 0; i < parts.Count; i++)
        {
            var (example, task) = parts[i];
            var prompt = i == 0 ? _tokenizer.Encode(example.Prompt) : _tokenizer.Encode("\n" + example.Prompt, addSpecialTokens: false);
            var response = _tokenizer.Encode(example.Response, addSpecialTokens: false).ToList();
            if (i == parts.Count - 1 && _eos is { } eos) response.Add(eos);
            // A response's last token predicts the newline that ends its line: in the loss, as ending the answer is.
            if (mask.Count > 0) mask[^1] = true;
            for (int t = 0; t < prompt.Length; t++) mask.Add(!_responseOnly || t + 1 == prompt.Length && response.Count > 0);
            for (int t = 0; t < response.Count; t++) mask.Add(t + 1 < response.Count);
            ids.AddRange(prompt);
            ids.AddRange(response);
            tasks.AddRange(Enumerable.Repeat(task, prompt.Length + response.Count));
        }
        mask[^1] = false;
        bool truncated = ids.Count > _maxLength;
        int n = Math.Min(ids.Count, _maxLength);
        var m = mask.Take(n).ToArray();
        m[^1] = false;
        return new EncodedExample(ids.Take(n).ToArray(), m, parts[0].Task, truncated) { TokenTasks = tasks.Take(n).ToArray() };
    }
}
