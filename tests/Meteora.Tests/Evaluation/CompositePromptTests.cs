using Meteora.Data;
using Meteora.Evaluation;
using Meteora.Training;

namespace Meteora.Tests.Evaluation;

public class CompositePromptTests
{
    private static Dictionary<string, List<TaskExample>> Data(string tag) => new()
    {
        ["add"] = [new($"add: 1 + 2 {tag}=>", " 3"), new($"add: 2 + 2 {tag}=>", " 4")],
        ["reverse"] = [new($"reverse: abc {tag}=>", " cba")],
        ["upper"] = [new($"upper: ab {tag}=>", " AB")],
    };

    [Fact]
    public void BuildsTwoSolvedShotsThenNProblemsFromDifferentTasks()
    {
        var ex = CompositePrompt.Build(Data("train "), Data(""), n: 3, new Random(1));
        Assert.Equal(3, ex.Parts.Select(p => p.Task).Distinct().Count());
        Assert.Equal(3, ex.Prompt.Split("Problems:").Length - 1);       // two shots + the test block
        Assert.EndsWith("Answers:\n", ex.Prompt);
        Assert.DoesNotContain("train", ex.Prompt.Split("Problems:")[^1]);  // the test problems come from test data
        foreach (var (part, i) in ex.Parts.Select((p, i) => (p, i)))
            Assert.Contains($"{i + 1}. {part.Prompt}", ex.Prompt.Split("Problems:")[^1]);
        Assert.Throws<MeteoraException>(() => CompositePrompt.Build(Data("t"), Data(""), n: 4, new Random(1)));
    }

    [Fact]
    public void ShotAnswersRestateTheirProblemAndParseBackToTheAnswer()
    {
        var ex = CompositePrompt.Build(Data("train "), Data(""), n: 3, new Random(1));
        var firstShotAnswers = ex.Prompt.Split("Answers:\n")[1].Split("Problems:")[0];
        var lines = firstShotAnswers.TrimEnd('\n').Split('\n');
        Assert.Equal(3, lines.Length);
        foreach (var line in lines) Assert.Matches(@"^\d\. \w+: .* train => \S+$", line);
        var parsed = CompositePrompt.ParseAnswers(firstShotAnswers, lines.Select(l => l[3..l.LastIndexOf(' ')]).ToList());
        var expected = Data("train ").Values.SelectMany(v => v).ToDictionary(e => e.Prompt, e => e.Response.Trim());
        for (int i = 0; i < 3; i++) Assert.Equal(expected[lines[i][3..lines[i].LastIndexOf(' ')]], parsed[i]);
    }

    [Fact]
    public void ParsesNumberedAnswersAndStopsAtTheNextBlock()
    {
        string[] suite = ["reverse: abc =>", "add: 9 + 8 =>", "upper: ab =>"];
        var answers = CompositePrompt.ParseAnswers("1. cba\n 3.  AB \n2. 3\n2. 99\nProblems:\n1. wrong\n", suite);
        Assert.Equal(["cba", "3", "AB"], answers);
        Assert.Equal(["x", ""], CompositePrompt.ParseAnswers("1. x\nnot numbered", ["p", "q"]));
        // A restated problem is cut off; an answer line without it is taken whole.
        Assert.Equal(["cba", "17", ""], CompositePrompt.ParseAnswers("1. reverse: abc => cba\n2. add: 9 + 8 =>  17 \n3. upper: ab =>", suite));
    }

    [Fact]
    public void ParsesAnswersToProblemsInAnyFormatByTheirOwnText()
    {
        // Real-world prompts: no "=>", questions, multi-line text put on one line, answers of several words.
        string[] prompts = ["What is the capital of France?", "Summarise:\nThe cat sat on the mat.", "Translate to German: good morning"];
        var oneLine = prompts.Select(CompositePrompt.OneLine).ToList();
        Assert.Equal("Summarise: The cat sat on the mat.", oneLine[1]);
        string generated = $"1. {oneLine[0]} Paris, a city on the Seine.\n2. {oneLine[1]} A cat sat.\n3. Translate to German good morning Guten Morgen\n";
        // Exact restatements are cut off whole; an inexact one after the problem's last word ("morning").
        Assert.Equal(["Paris, a city on the Seine.", "A cat sat.", "Guten Morgen"], CompositePrompt.ParseAnswers(generated, prompts));
    }

    [Fact]
    public void MultiLinePromptsAndAnswersStayOnTheirNumberedLine()
    {
        var data = new Dictionary<string, List<TaskExample>>
        {
            ["a"] = [new("line one\nline two", "answer\nspread over lines")],
            ["b"] = [new("Question: why?", "Because.")],
        };
        var ex = CompositePrompt.Build(data, data, n: 2, new Random(3));
        var block = ex.Prompt.Split("Problems:")[^1];
        Assert.Equal(3, block.Trim('\n').Split('\n').Length);       // two problems, one line each, then "Answers:"
        Assert.Contains(ex.Parts, p => p.Prompt == "line one line two" && p.Reference == "answer spread over lines");
        Assert.Contains("line one line two answer spread over lines\n", ex.Prompt);   // the shots' answer lines too
    }
}
