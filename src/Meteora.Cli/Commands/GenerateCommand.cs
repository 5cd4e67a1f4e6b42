using System.CommandLine;
using System.Text.Json;
using Meteora.Generation;
using Meteora.Llama;
using Meteora.Tokenization;

namespace Meteora.Cli.Commands;

/// <summary>
/// <c>generate --model DIR [--adapter DIR | --meteora DIR …] (--prompt S | --ids …) --max-new-tokens N [--greedy | --temperature-sampling T --top-p P
/// --seed S] [--stop-at-eos] [--json]</c>: streams the continuation to stdout, or prints one JSON object.
/// </summary>
public static class GenerateCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var model = new ModelOptions();
        var prompt = new Option<string?>("--prompt") { Description = "prompt text (tokenized with BOS)" };
        var ids = new Option<string?>("--ids") { Description = "prompt as comma-separated token ids" };
        var maxNew = new Option<int>("--max-new-tokens") { Description = "tokens to generate", DefaultValueFactory = _ => 64 };
        var greedy = new Option<bool>("--greedy") { Description = "pick the most likely token (the default)" };
        var temperature = new Option<double?>("--temperature-sampling") { Description = "sample at this temperature instead of greedy" };
        var topP = new Option<double>("--top-p") { Description = "nucleus sampling mass", DefaultValueFactory = _ => 1.0 };
        var seed = new Option<long>("--seed") { Description = "sampling seed", DefaultValueFactory = _ => 0 };
        var stopAtEos = new Option<bool>("--stop-at-eos") { Description = "stop a row at its end-of-sequence token" };
        var json = new Option<bool>("--json") { Description = "print {\"prompt_ids\",\"new_token_ids\",\"text\"} instead of streaming" };
        var noGraph = new Option<bool>("--no-cuda-graph") { Description = "on CUDA, run every decode step eagerly instead of replaying a CUDA graph" };
        var cmd = new Command("generate", "Generate a continuation with the KV cache")
            { prompt, ids, maxNew, greedy, temperature, topP, seed, stopAtEos, json, noGraph };
        model.AddTo(cmd);
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            if ((p.GetValue(prompt) is null) == (p.GetValue(ids) is null))
                throw new MeteoraException("generate: give exactly one of --prompt and --ids");
            if (p.GetValue(greedy) && p.GetValue(temperature) is not null)
                throw new MeteoraException("generate: --greedy and --temperature-sampling exclude each other");
            string folder = p.GetValue(model.Model)!;
            using var tokenizer = HfTokenizer.Load(folder);
            int[] promptIds = p.GetValue(prompt) is { } text ? tokenizer.Encode(text) : TokenIdList.Parse(p.GetValue(ids)!);
            using var loaded = model.Load(p, ctx);
            var lm = loaded.Lm;
            TokenIdList.CheckRange(promptIds, lm.Config.VocabSize);
            var eos = SpecialTokens.EosIds(lm.Config, tokenizer);
            var options = new GenerationOptions
            {
                MaxNewTokens = p.GetValue(maxNew),
                Greedy = p.GetValue(temperature) is null,
                Temperature = p.GetValue(temperature) ?? 1.0,
                TopP = p.GetValue(topP),
                Seed = p.GetValue(seed),
                StopAtEos = p.GetValue(stopAtEos),
                EosIds = eos,
                CudaGraph = !p.GetValue(noGraph),
            };
            options.Validate();   // before anything is printed
            bool asJson = p.GetValue(json);
            var stream = new StreamingDetokenizer(tokenizer, promptIds);
            if (!asJson) ctx.Out.Write(tokenizer.Decode(promptIds));
            var result = new TextGenerator(lm).Generate([promptIds], options, (_, chosen) =>
            {
                if (asJson || chosen[0] < 0) return;
                ctx.Out.Write(stream.Add(chosen[0]));
                ctx.Out.Flush();
            })[0];
            if (asJson)
                ctx.Out.WriteLine(CliJson.Serialize(new Dictionary<string, object>
                {
                    ["prompt_ids"] = promptIds, ["new_token_ids"] = result, ["text"] = tokenizer.Decode(result),
                }));
            else
                ctx.Out.WriteLine(stream.Flush());
            return 0;
        });
        return cmd;
    }
}
