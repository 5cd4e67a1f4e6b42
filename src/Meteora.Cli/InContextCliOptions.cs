using System.CommandLine;
using Meteora.Training;

namespace Meteora.Cli;

/// <summary>
/// Where training examples sit, for train-lora, train-gate and add-adapter: <c>--in-context</c> / <c>--in-context-chars</c>
/// (<see cref="InContextExamples"/>) and <c>--restate</c> / <c>--restate-items</c> / <c>--restate-copy-weight</c>
/// (<see cref="RestatedLists"/>).
/// </summary>
public sealed class InContextCliOptions
{
    public Option<double> Share { get; } = new("--in-context")
    { Description = "share of training examples put after generic text (cut at a line), so they are learnt mid-document too; that text is in no loss (0: off)", DefaultValueFactory = _ => 0 };
    public Option<int> Chars { get; } = new("--in-context-chars") { Description = "longest generic text before an example, in characters", DefaultValueFactory = _ => 512 };
    public Option<double> Restate { get; } = new("--restate")
    { Description = "share of training examples turned into restated lists: problems listed, then restated one per line with their answers, the restated lines in the loss (0: off)", DefaultValueFactory = _ => 0 };
    public Option<int> RestateItems { get; } = new("--restate-items") { Description = "most problems per restated list (each has 2…N)", DefaultValueFactory = _ => 3 };
    public Option<double> RestateCopyWeight { get; } = new("--restate-copy-weight")
    { Description = "LM-loss weight of a restated problem's tokens (its answer's weigh 1)", DefaultValueFactory = _ => 0.1 };

    public void AddTo(Command c)
    {
        c.Options.Add(Share);
        c.Options.Add(Chars);
        c.Options.Add(Restate);
        c.Options.Add(RestateItems);
        c.Options.Add(RestateCopyWeight);
    }

    public TrainingOptions Apply(ParseResult p, TrainingOptions o) => o with
    {
        InContextShare = p.GetValue(Share), InContextChars = p.GetValue(Chars),
        RestateShare = p.GetValue(Restate), RestateItems = p.GetValue(RestateItems), RestateCopyWeight = p.GetValue(RestateCopyWeight),
    };
}
