using System.CommandLine;
using Meteora.Training;

namespace Meteora.Cli;

/// <summary><c>--in-context</c> / <c>--in-context-chars</c> of train-lora and train-gate (<see cref="InContextExamples"/>).</summary>
public sealed class InContextCliOptions
{
    public Option<double> Share { get; } = new("--in-context")
    { Description = "share of training examples put after generic text (cut at a line), so they are learnt mid-document too; that text is in no loss (0: off)", DefaultValueFactory = _ => 0 };
    public Option<int> Chars { get; } = new("--in-context-chars") { Description = "longest generic text before an example, in characters", DefaultValueFactory = _ => 512 };

    public void AddTo(Command c)
    {
        c.Options.Add(Share);
        c.Options.Add(Chars);
    }

    public TrainingOptions Apply(ParseResult p, TrainingOptions o) => o with { InContextShare = p.GetValue(Share), InContextChars = p.GetValue(Chars) };
}
