using System.Text.RegularExpressions;
using Meteora.Data;
using Meteora.Evaluation;
using Meteora.Training;

namespace Meteora.Tests.Training;

public class GenericCorpusTests
{
    [Fact]
    public void DocumentsFitTheirLengthAndNeverUseATaskPromptFormat()
    {
        var rng = new Random(5);
        int longer = 0;
        for (int i = 0; i < 200; i++)
        {
            var doc = GenericCorpus.Document(rng, 1000);
            // Blocks that do not fit are drawn again; longer only if a single free line were (it never is at 1 000).
            if (doc.Length > 1000) longer++;
            Assert.True(doc.Length <= 2000, $"document of {doc.Length} chars");
            // No line in a task's prompt format ("name: input =>"); random symbol strings may hold any characters.
            Assert.DoesNotContain(doc.Split('\n'), l => Regex.IsMatch(l, @"^(\d+\. )?[a-z]+: .* =>$"));
            foreach (var task in TaskSuite.All) Assert.DoesNotContain(task.Name + ":", doc);
        }
        Assert.Equal(0, longer);
    }

    [Fact]
    public void NumberedListsAreRepeatedLineForLine()
    {
        var rng = new Random(6);
        int lists = 0;
        for (int i = 0; i < 100; i++)
        {
            var lines = GenericCorpus.Document(rng, 500).Split('\n');
            // A list is a heading then "1. …", "2. …"; its copy appears later under another heading.
            for (int j = 0; j + 1 < lines.Length; j++)
            {
                if (!lines[j].EndsWith(':') || !lines[j + 1].StartsWith("1. ")) continue;
                var items = lines.Skip(j + 1).TakeWhile(l => Regex.IsMatch(l, @"^\d+\. ")).ToList();
                int copy = Enumerable.Range(j + 1 + items.Count, Math.Max(0, lines.Length - j - items.Count - 1))
                    .FirstOrDefault(k => lines[k] == items[0] && lines[k - 1].EndsWith(':'), -1);
                if (copy < 0) continue;   // the first list of a repeat pair was found as the copy of an earlier one
                Assert.Equal(items, lines.Skip(copy).Take(items.Count));
                lists++;
            }
        }
        Assert.True(lists > 20, $"{lists} repeated lists");
    }

    [Fact]
    public void FactsStateTheSuiteOperationsCorrectly()
    {
        var rng = new Random(7);
        int checkedFacts = 0;
        for (int i = 0; i < 2000; i++)
        {
            var f = GenericCorpus.Fact(rng);
            Match m;
            if ((m = Regex.Match(f, @"^backwards, (\w+) reads (\w+)\.$")).Success) Assert.Equal(SuiteSkills.Reverse(m.Groups[1].Value), m.Groups[2].Value);
            else if ((m = Regex.Match(f, @"^(\d+) plus (\d+) makes (\d+)\.$")).Success)
                Assert.Equal(int.Parse(m.Groups[1].Value) + int.Parse(m.Groups[2].Value), int.Parse(m.Groups[3].Value));
            else if ((m = Regex.Match(f, @"^one letter on from (\w+) is (\w+)\.$")).Success) Assert.Equal(SuiteSkills.Caesar(m.Groups[1].Value), m.Groups[2].Value);
            else if ((m = Regex.Match(f, @"^the first letters of ([\w ]+) spell (\w+)\.$")).Success)
                Assert.Equal(SuiteSkills.Initials(m.Groups[1].Value.Split(' ')), m.Groups[2].Value);
            else continue;
            checkedFacts++;
        }
        Assert.True(checkedFacts > 400, $"{checkedFacts} facts checked");
        Assert.Equal("zab", SuiteSkills.Caesar("yza"));
        Assert.Equal("rcs", SuiteSkills.Initials(["red", "cat", "sun"]));
    }

    [Fact]
    public void QuestionsAreAnsweredOnNumberedLinesThatRestateThem()
    {
        var rng = new Random(8);
        int blocks = 0;
        for (int i = 0; i < 200; i++)
        {
            var lines = GenericCorpus.Document(rng, 2000).Split('\n');
            for (int j = 0; j + 1 < lines.Length; j++)
            {
                if (!lines[j].EndsWith(':') || !lines[j + 1].StartsWith("1. ")) continue;
                var asked = lines.Skip(j + 1).TakeWhile(l => Regex.IsMatch(l, @"^\d+\. ")).ToList();
                int reply = j + 1 + asked.Count;
                if (reply + asked.Count >= lines.Length || !lines[reply].EndsWith(':')) continue;
                var answered = lines.Skip(reply + 1).Take(asked.Count).ToList();
                // Question blocks (not restated lists, not a list followed by another block): the first reply restates
                // the first question; then every reply is its question, a space and an answer.
                if (answered[0] == asked[0] || !answered[0].StartsWith(asked[0] + " ")) continue;
                foreach (var (q, a) in asked.Zip(answered)) Assert.StartsWith(q + " ", a);
                blocks++;
            }
        }
        Assert.True(blocks > 50, $"{blocks} question blocks");
    }

    [Fact]
    public void SectionLinesFollowTheirHeadingAndDefinitionsAreRecalledExactly()
    {
        var rng = new Random(9);
        int sections = 0, recalls = 0;
        for (int i = 0; i < 200; i++)
        {
            var lines = GenericCorpus.Document(rng, 2000).Split('\n');
            var defined = new Dictionary<string, string>();
            for (int j = 0; j < lines.Length; j++)
            {
                Match m;
                if ((m = Regex.Match(lines[j], @"^(\w+) means (.+)\.$")).Success) defined[m.Groups[1].Value] = m.Groups[2].Value;
                else if ((m = Regex.Match(lines[j], @"^recall: (\w+) means (.+)\.$")).Success) { Assert.Equal(defined[m.Groups[1].Value], m.Groups[2].Value); recalls++; }
                else if (Regex.IsMatch(lines[j], "^(# |== )?(words spelled backwards|reversed letters|read from the end)(:| ==)?$"))
                {
                    for (int k = j + 1; k < lines.Length && (m = Regex.Match(lines[k], @"^([a-z]+) (?:gives|becomes|is|turns into) ([a-z]+)\.$")).Success; k++)
                        Assert.Equal(SuiteSkills.Reverse(m.Groups[1].Value), m.Groups[2].Value);
                    sections++;
                }
            }
        }
        Assert.True(sections > 10 && recalls > 50, $"{sections} reverse sections, {recalls} recalls");
    }
}
