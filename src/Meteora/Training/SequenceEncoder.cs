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
}
