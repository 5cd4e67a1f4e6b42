using System.Text;
using System.Text.RegularExpressions;
using Meteora.Data;

namespace Meteora.Evaluation;

/// <summary>One sub-problem of a composite prompt: its task and the expected answer.</summary>
public sealed record CompositePart(string Task, string Prompt, string Reference);

/// <summary>A composite-n prompt: n sub-problems from different tasks, with two solved examples first.</summary>
/// <param name="Prompt">The prompt text, ending after the answers header.</param>
/// <param name="Parts">The sub-problems, in order.</param>
/// <param name="LineTasks">The task of each line of <paramref name="Prompt"/> (a problem or answer line's own task; null for
/// the instruction and the headers), for diagnostics that route by task (<c>eval --route-by-task tokens</c>).</param>
public sealed record CompositeExample(string Prompt, IReadOnlyList<CompositePart> Parts, IReadOnlyList<string?>? LineTasks = null);

/// <summary>
/// Composite-n evaluation as the paper describes it: a 2-shot prompt whose shots are solved composite examples
/// built from training data, followed by n test sub-prompts from n different tasks; the model answers on
/// numbered lines "i. …", parsed back into one answer per sub-problem and scored per sub-task. Each answer line
/// restates its problem before the answer ("2. reverse: abc => cba"), as the shots show, so that every answer is
/// produced right after its own task's prompt, in the same local context the task's adapter was trained on.
/// Prompts and answers that span lines are put on one line (line breaks become spaces), since a numbered line is
/// what holds one sub-problem; the references are scored in that form too.
/// </summary>
public static partial class CompositePrompt
{
    /// <summary>The prompt's first line (<see cref="ProblemLists.Instruction"/>).</summary>
    public const string Instruction = ProblemLists.Instruction;
    /// <summary>The line that opens a block of answers (<see cref="ProblemLists.AnswersHeader"/>).</summary>
    public const string AnswersHeader = ProblemLists.AnswersHeader;

    /// <summary>
    /// Builds one composite-n example: shots from <paramref name="train"/>, parts from <paramref name="test"/>, over
    /// n distinct tasks drawn with <paramref name="rng"/>.
    /// </summary>
    public static CompositeExample Build(IReadOnlyDictionary<string, List<TaskExample>> train,
        IReadOnlyDictionary<string, List<TaskExample>> test, int n, Random rng, int shots = 2)
    {
        var tasks = test.Keys.Order(StringComparer.Ordinal).ToList();
        if (n < 1 || n > tasks.Count) throw new MeteoraException($"--composite: n = {n} needs between 1 and {tasks.Count} tasks");
        var sb = new StringBuilder().AppendLine(Instruction);
        var lineTasks = new List<string?> { null };
        void Problems(IReadOnlyList<(string Task, string Prompt)> list)
        {
            AppendProblems(sb, list.Select(x => x.Prompt));
            lineTasks.Add(null);                                             // the header
            lineTasks.AddRange(list.Select(x => (string?)x.Task));
        }
        for (int s = 0; s < shots; s++)
        {
            var shotTasks = tasks.OrderBy(_ => rng.Next()).Take(n).ToList();
            var shot = shotTasks.Select(t => (Task: t, Example: train[t][rng.Next(train[t].Count)])).ToList();
            Problems(shot.Select(x => (x.Task, OneLine(x.Example.Prompt))).ToList());
            sb.AppendLine(AnswersHeader);
            lineTasks.Add(null);
            for (int i = 0; i < shot.Count; i++)
            {
                sb.AppendLine(AnswerLine(i + 1, OneLine(shot[i].Example.Prompt), OneLine(shot[i].Example.Response)));
                lineTasks.Add(shot[i].Task);
            }
        }
        var chosen = tasks.OrderBy(_ => rng.Next()).Take(n).ToList();
        var parts = chosen.Select(t => { var e = test[t][rng.Next(test[t].Count)]; return new CompositePart(t, OneLine(e.Prompt), OneLine(e.Response)); }).ToList();
        Problems(parts.Select(p => (p.Task, p.Prompt)).ToList());
        sb.Append(AnswersHeader).Append('\n');
        lineTasks.Add(null);
        return new CompositeExample(sb.ToString(), parts, lineTasks);
    }

    /// <summary>Answer line <paramref name="number"/> of a solved block: the problem restated, then its answer.</summary>
    public static string AnswerLine(int number, string prompt, string answer) => ProblemLists.AnswerLine(number, prompt, answer);

    /// <summary>A "Problems:" block: the prompts on numbered lines.</summary>
    public static void AppendProblems(StringBuilder sb, IEnumerable<string> prompts) => ProblemLists.AppendProblems(sb, prompts);

    [GeneratedRegex(@"^\s*(\d+)\.\s*(.*?)\s*$")] private static partial Regex NumberedLine();
    /// <summary>The text trimmed, with every line break (and the spaces around it) turned into one space.</summary>
    public static string OneLine(string text) => ProblemLists.OneLine(text);

    /// <summary>
    /// Answers by number from "i. …" lines, one per problem of <paramref name="prompts"/>: a line that restates its
    /// problem gives the text after it; one that restates it inexactly gives the text after the last occurrence of the
    /// problem's last word (its closing "=>", "?" or word), and one without either is taken whole. Missing numbers give
    /// empty answers; the first line of a number counts; parsing stops at a new "Problems:" block. Nothing here knows
    /// a task's format: the problems themselves say where the restatement ends.
    /// </summary>
    public static string[] ParseAnswers(string generated, IReadOnlyList<string> prompts)
    {
        int n = prompts.Count;
        var answers = new string[n];
        var seen = new bool[n];
        Array.Fill(answers, "");
        foreach (var line in generated.Split('\n'))
        {
            if (line.StartsWith(ProblemLists.ProblemsHeader, StringComparison.Ordinal)) break;
            var m = NumberedLine().Match(line);
            if (!m.Success || !int.TryParse(m.Groups[1].Value, out int i) || i < 1 || i > n || seen[i - 1]) continue;
            seen[i - 1] = true;
            answers[i - 1] = AfterRestatement(m.Groups[2].Value, OneLine(prompts[i - 1]));
        }
        return answers;
    }

    /// <summary>The answer part of an answer line whose problem was <paramref name="prompt"/>.</summary>
    private static string AfterRestatement(string text, string prompt)
    {
        if (prompt.Length == 0) return text;
        if (text.StartsWith(prompt, StringComparison.Ordinal)) return text[prompt.Length..].Trim();
        string last = prompt[(prompt.LastIndexOf(' ') + 1)..];
        int at = text.LastIndexOf(last, StringComparison.Ordinal);
        return at < 0 ? text : text[(at + last.Length)..].Trim();
    }
}
