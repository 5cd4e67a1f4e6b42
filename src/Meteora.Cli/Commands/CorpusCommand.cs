using System.CommandLine;
using Meteora.Training;

namespace Meteora.Cli.Commands;

/// <summary>
/// <c>corpus [--documents N] [--first I] [--seed S] [--chars C]</c>: prints the generated pretraining documents
/// <c>make-base</c> trains on (document I, I+1, … of the corpus with seed S), so a user can read what the built-in
/// base has seen. The same seed and length as a make-base run give exactly its documents.
/// </summary>
public static class CorpusCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var count = new Option<int>("--documents") { Description = "documents to print", DefaultValueFactory = _ => 3 };
        var first = new Option<int>("--first") { Description = "index of the first document", DefaultValueFactory = _ => 0 };
        var seed = new Option<int>("--seed") { Description = "corpus seed (make-base's --seed)", DefaultValueFactory = _ => 42 };
        var chars = new Option<int>("--chars") { Description = "characters per document (make-base uses --max-seq-len − 2)", DefaultValueFactory = _ => 2046 };
        var cmd = new Command("corpus", "Print documents of the generated pretraining corpus make-base trains on") { count, first, seed, chars };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            int n = p.GetValue(count), i0 = p.GetValue(first), c = p.GetValue(chars);
            if (n < 1 || n > 10_000) throw new MeteoraException($"--documents: {n} is out of range (1…10000)");
            if (i0 < 0) throw new MeteoraException($"--first: {i0} must be ≥ 0");
            if (c < 16 || c > 1_000_000) throw new MeteoraException($"--chars: {c} is out of range (16…1000000)");
            ctx.Out.WriteLine($"# generic corpus {GenericCorpus.Version}, seed {p.GetValue(seed)}");
            for (int i = i0; i < i0 + n; i++)
                ctx.Out.WriteLine($"\n===== document {i} =====\n{GeneratedDocuments.TextOf(p.GetValue(seed), i, c)}");
            return 0;
        });
        return cmd;
    }
}
