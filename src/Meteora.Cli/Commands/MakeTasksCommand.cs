using System.CommandLine;
using Meteora.Evaluation;

namespace Meteora.Cli.Commands;

/// <summary><c>make-tasks --out DIR [--train N] [--test N] [--seed S] [--tasks a,b]</c>: writes the built-in task suite.</summary>
public static class MakeTasksCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var output = new Option<string>("--out") { Description = "folder to write one task folder per task into", Required = true };
        var train = new Option<int>("--train") { Description = "training examples per task", DefaultValueFactory = _ => 500 };
        var test = new Option<int>("--test") { Description = "test examples per task", DefaultValueFactory = _ => 100 };
        var seed = new Option<int>("--seed") { Description = "generation seed", DefaultValueFactory = _ => 0 };
        var tasks = new Option<string?>("--tasks") { Description = "comma-separated subset (default: all twelve)" };
        var cmd = new Command("make-tasks", "Write the built-in task suite (train.jsonl, test.jsonl, task.json per task)") { output, train, test, seed, tasks };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var only = p.GetValue(tasks)?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            TaskSuite.Write(p.GetValue(output)!, p.GetValue(train), p.GetValue(test), p.GetValue(seed), only);
            foreach (var t in TaskSuite.All.Where(t => only is null || only.Contains(t.Name)))
                ctx.Out.WriteLine($"{t.Name,-10} {t.Metric,-8} {t.Description}");
            ctx.Err.WriteLine($"wrote {(only?.Length ?? TaskSuite.All.Count)} tasks to {p.GetValue(output)}");
            return 0;
        });
        return cmd;
    }
}
