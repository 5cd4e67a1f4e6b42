using System.CommandLine;
using Meteora.Cli.Commands;
using Meteora.Runtime;

namespace Meteora.Cli;

/// <summary>
/// The <c>meteora</c> command line. User errors (<see cref="MeteoraException"/>) print one line to stderr and
/// exit 1; unexpected failures print their type and message (and the stack with METEORA_DEBUG=1) and exit 2.
/// </summary>
public static class CliApp
{
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var parse = Build(stdout, stderr).Parse(args);
        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (MeteoraException e)
        {
            stderr.WriteLine($"error: {OneLine(e.Message)}");
            return 1;
        }
        catch (TypeInitializationException e) when (TorchRuntime.MissingBackendMessage(e) is { } missing)
        {
            stderr.WriteLine($"error: {missing}");
            return 1;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            stderr.WriteLine($"error: {e.GetType().Name}: {OneLine(e.Message)}");
            if (Environment.GetEnvironmentVariable("METEORA_DEBUG") == "1") stderr.WriteLine(e);
            return 2;
        }
    }

    /// <summary>The command tree, its actions writing to <paramref name="stdout"/> and <paramref name="stderr"/>.</summary>
    public static RootCommand Build(TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("MeteoRA for .NET: many LoRA adapters embedded in one LLaMA model with per-token routing");
        root.Options.Add(GlobalOptions.Device);
        root.Options.Add(GlobalOptions.DType);
        CliContext Context(ParseResult p)
        {
            DistributedLaunch.CheckCommand(p);   // under torchrun with several ranks, only the data-parallel commands run
            return new() { Out = stdout, Err = stderr, Parse = p };
        }
        root.Subcommands.Add(TokenizeCommand.Create(Context));
        root.Subcommands.Add(ForwardCommand.Create(Context));
        root.Subcommands.Add(GenerateCommand.Create(Context));
        root.Subcommands.Add(LossCommand.Create(Context));
        root.Subcommands.Add(MergeCommand.Create(Context));
        root.Subcommands.Add(MakeTasksCommand.Create(Context));
        root.Subcommands.Add(MakeBaseCommand.Create(Context));
        root.Subcommands.Add(ProbeBaseCommand.Create(Context));
        root.Subcommands.Add(CorpusCommand.Create(Context));
        root.Subcommands.Add(EvalCommand.Create(Context));
        root.Subcommands.Add(ConvertCommand.Create(Context));
        root.Subcommands.Add(InspectCommand.Create(Context));
        root.Subcommands.Add(TrainLoraCommand.Create(Context));
        root.Subcommands.Add(TrainGateCommand.Create(Context));
        root.Subcommands.Add(BenchCommand.Create(Context));
        root.Subcommands.Add(DemoCommand.Create(Context));
        root.Subcommands.Add(ServeCommand.Create(Context));
        root.Subcommands.Add(AddAdapterCommand.Create(Context));
        root.Subcommands.Add(RemoveAdapterCommand.Create(Context));
        return root;
    }

    private static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();
}
