using Meteora.Generation;
using Meteora.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Serving;

/// <summary>
/// Picks the next token of every row of a batched step with that row's own settings: argmax for greedy rows,
/// temperature + top-p from the row's own seeded generator otherwise, and log-probabilities (of the model's
/// distribution, before temperature) where asked. Greedy rows without log-probabilities never leave the device
/// except for their ids.
/// </summary>
internal static class RowSampler
{
    /// <summary>A row's pick: token, and its log-probability and alternatives when asked.</summary>
    public readonly record struct Pick(int Token, TokenLogprob? Logprob, IReadOnlyList<TokenLogprob>? Top);

    /// <summary>logits (B, V); <paramref name="rows"/> (row index, request) → one pick per listed row, in order.</summary>
    public static Pick[] Choose(Tensor logits, IReadOnlyList<(int Row, EngineRequest Request)> rows, HfTokenizer tokenizer)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var picks = new Pick[rows.Count];
        var argmax = logits.argmax(-1).cpu().data<long>().ToArray();                     // (B,)
        var full = rows.Select((r, i) => (r, i)).Where(x => !x.r.Request.Greedy || x.r.Request.Sampling.Logprobs is not null).ToList();
        Tensor? host = null;
        if (full.Count > 0)
        {
            using var index = tensor(full.Select(x => (long)x.r.Row).ToArray(), device: logits.device);
            host = logits.index_select(0, index).to(ScalarType.Float32).cpu();             // (F, V)
        }
        for (int i = 0; i < rows.Count; i++) picks[i] = new Pick((int)argmax[rows[i].Row], null, null);
        for (int f = 0; f < full.Count; f++)
        {
            var ((_, request), i) = full[f];
            var row = host!.select(0, f);                                                    // (V,)
            int token = request.Greedy ? picks[i].Token : Sample(row, request);
            TokenLogprob? chosen = null; IReadOnlyList<TokenLogprob>? top = null;
            if (request.Sampling.Logprobs is { } n)
            {
                var logp = row.log_softmax(-1);
                chosen = Entry(tokenizer, token, logp[token].item<float>());
                if (n > 0)
                {
                    var (values, ids) = logp.topk(Math.Min(n, (int)logp.shape[0]));
                    var v = values.data<float>().ToArray(); var d = ids.data<long>().ToArray();
                    top = d.Select((id, j) => Entry(tokenizer, (int)id, v[j])).ToArray();
                }
            }
            picks[i] = new Pick(token, chosen, top);
        }
        return picks;
    }

    /// <summary>One token from softmax(row / T), restricted to the smallest top-p nucleus, with the request's generator.</summary>
    private static int Sample(Tensor row, EngineRequest request)
    {
        using var scope = NewDisposeScope();
        using var t = request.Sampling.Temperature.ToScalar();   // held for the op (see RmsNorm)
        var probs = TokenSampler.Nucleus(row.div(t).softmax(-1), request.Sampling.TopP);   // (V,)
        return (int)multinomial(probs, 1, false, request.Random).item<long>();
    }

    private static TokenLogprob Entry(HfTokenizer tokenizer, int id, float logprob)
    {
        var bytes = tokenizer.TokenBytes(id);
        return new TokenLogprob(id, System.Text.Encoding.UTF8.GetString(bytes), bytes, logprob);
    }
}
