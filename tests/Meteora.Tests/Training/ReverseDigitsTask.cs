using System.Text.Json;
using Meteora.Data;
using Meteora.Training;

namespace Meteora.Tests.Training;

/// <summary>
/// A task generated for the tests: reverse a list of 3 digits ("reverse: 3 1 4 => 4 1 3"). Every " d" is one
/// token of the fixture tokenizer, so the skill is a pure token-order copy that a LoRA on the tiny base can learn.
/// </summary>
public static class ReverseDigitsTask
{
    public static TaskExample Make(Random rng, int length = 3)
    {
        var digits = Enumerable.Range(0, length).Select(_ => rng.Next(1, 10)).ToArray();
        return new TaskExample($"reverse: {string.Join(' ', digits)} =>", " " + string.Join(' ', digits.Reverse()));
    }

    /// <summary>Writes train.jsonl and test.jsonl (disjoint prompts) into <paramref name="folder"/>.</summary>
    public static string Write(string folder, int train, int test, int seed = 1)
    {
        Directory.CreateDirectory(folder);
        var rng = new Random(seed);
        var seen = new HashSet<string>();
        List<TaskExample> Draw(int n)
        {
            var list = new List<TaskExample>();
            while (list.Count < n)
            {
                var e = Make(rng);
                if (seen.Add(e.Prompt)) list.Add(e);
            }
            return list;
        }
        var testSet = Draw(test);
        var trainSet = Draw(train);
        File.WriteAllLines(Path.Combine(folder, "train.jsonl"), trainSet.Select(e => JsonSerializer.Serialize(new { prompt = e.Prompt, response = e.Response })));
        File.WriteAllLines(Path.Combine(folder, "test.jsonl"), testSet.Select(e => JsonSerializer.Serialize(new { prompt = e.Prompt, response = e.Response })));
        return folder;
    }
}
