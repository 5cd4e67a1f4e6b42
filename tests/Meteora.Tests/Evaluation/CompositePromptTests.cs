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
        var parsed = CompositePrompt.ParseAnswers(firstShotAnswers, 3);
        var expected = Data("train ").Values.SelectMany(v => v).ToDictionary(e => e.Prompt, e => e.Response.Trim());
        for (int i = 0; i < 3; i++) Assert.Equal(expected[lines[i][3..lines[i].LastIndexOf(' ')]], parsed[i]);
    }

    [Fact]
    public void ParsesNumberedAnswersAndStopsAtTheNextBlock()
    {
        var answers = CompositePrompt.ParseAnswers("1. cba\n 3.  AB \n2. 3\n2. 99\nProblems:\n1. wrong\n", 3);
        Assert.Equal(["cba", "3", "AB"], answers);
        Assert.Equal(["x", ""], CompositePrompt.ParseAnswers("1. x\nnot numbered", 2));
        // A restated problem is cut at its last "=>"; an answer line without one is taken whole.
        Assert.Equal(["cba", "17", ""], CompositePrompt.ParseAnswers("1. reverse: abc => cba\n2. add: 9 + 8 =>  17 \n3. upper: ab =>", 3));
    }
}
