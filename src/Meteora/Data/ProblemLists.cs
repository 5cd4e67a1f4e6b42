using System.Text;
using System.Text.RegularExpressions;

namespace Meteora.Data;

/// <summary>
/// The numbered-problem layout that composite prompts (evaluation) and restated lists (training) share: a
/// "Problems:" block of "i. problem" lines, then an "Answers:" block of "i. problem answer" lines, each problem and
/// answer on one line. One definition, so what training teaches is exactly what evaluation asks.
/// </summary>
public static partial class ProblemLists
{
    /// <summary>A composite prompt's first line.</summary>
    public const string Instruction = "Solve each problem. Answer on numbered lines.";
    /// <summary>The line that opens a block of problems.</summary>
    public const string ProblemsHeader = "Problems:";
    /// <summary>The line that opens a block of answers.</summary>
    public const string AnswersHeader = "Answers:";

    [GeneratedRegex(@"\s*[\r\n]+\s*")] private static partial Regex LineBreaks();

    /// <summary>The text trimmed, with every line break (and the spaces around it) turned into one space: one problem per line.</summary>
    public static string OneLine(string text) => LineBreaks().Replace(text.Trim(), " ");

    /// <summary>A listed line: number and problem ("2. reverse: abc =>" for the built-in suite).</summary>
    public static string ListLine(int number, string prompt) => $"{number}. {OneLine(prompt)}";

    /// <summary>An answer line: number, the problem restated, its answer ("2. reverse: abc => cba").</summary>
    public static string AnswerLine(int number, string prompt, string answer) => $"{number}. {OneLine(prompt)} {OneLine(answer)}";

    /// <summary>A "Problems:" block: the prompts on numbered lines.</summary>
    public static void AppendProblems(StringBuilder sb, IEnumerable<string> prompts)
    {
        sb.AppendLine(ProblemsHeader);
        int i = 1;
        foreach (var p in prompts) sb.AppendLine(ListLine(i++, p));
    }
}
