using Meteora.Data;
using Meteora.Generation;
using Meteora.Llama;
using Meteora.Tokenization;

namespace Meteora.Evaluation;

/// <summary>Greedy answers to prompts, generated in batches until EOS, and exact-match scoring.</summary>
public static class GreedyAnswers
{
    /// <summary>Generates an answer (decoded text of the new tokens) for every prompt.</summary>
    public static List<string> Generate(LlamaForCausalLM lm, HfTokenizer tokenizer, IReadOnlyList<string> prompts,
        int maxNewTokens, int batchSize = 16, Action<int>? onBatch = null)
    {
        var eos = SpecialTokens.EosIds(lm.Config, tokenizer);
        var options = new GenerationOptions { MaxNewTokens = maxNewTokens, StopAtEos = true, EosIds = eos };
        var generator = new TextGenerator(lm);
        var answers = new List<string>();
        for (int i = 0; i < prompts.Count; i += batchSize)
        {
            var batch = prompts.Skip(i).Take(batchSize).Select(p => tokenizer.Encode(p)).ToList();
            foreach (var ids in generator.Generate(batch, options))
                answers.Add(tokenizer.Decode(ids.Where(t => !eos.Contains(t))));
            onBatch?.Invoke(answers.Count);
        }
        return answers;
    }

    /// <summary>Share of examples whose greedy answer equals the response (surrounding whitespace ignored).</summary>
    public static double ExactMatch(LlamaForCausalLM lm, HfTokenizer tokenizer, IReadOnlyList<TaskExample> examples,
        int maxNewTokens, int batchSize = 16)
    {
        if (examples.Count == 0) return 0;
        var answers = Generate(lm, tokenizer, examples.Select(e => e.Prompt).ToList(), maxNewTokens, batchSize);
        return examples.Zip(answers).Count(p => p.First.Response.Trim() == p.Second.Trim()) / (double)examples.Count;
    }
}
