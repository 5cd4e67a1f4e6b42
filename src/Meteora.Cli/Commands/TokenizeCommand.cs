using System.CommandLine;
using System.Text.Json;
using Meteora.Tokenization;

namespace Meteora.Cli.Commands;

/// <summary><c>tokenize --model DIR --text S</c>: prints the token ids (post-processor applied) as a JSON array.</summary>
public static class TokenizeCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model folder (tokenizer.json)", Required = true };
        var text = new Option<string>("--text") { Description = "text to tokenize", Required = true };
        var cmd = new Command("tokenize", "Print the token ids of a text as a JSON array") { model, text };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            using var tokenizer = HfTokenizer.Load(p.GetValue(model)!);
            ctx.Out.WriteLine(CliJson.Serialize(tokenizer.Encode(p.GetValue(text)!)));
            return 0;
        });
        return cmd;
    }
}
