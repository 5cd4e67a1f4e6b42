using System.Text.Json;

namespace Meteora.Data;

/// <summary>
/// Reads task data in the original MeteoRA layout: a folder with <c>train.jsonl</c> and <c>test.jsonl</c>, one
/// <c>{"prompt": …, "response": …}</c> object per line. A malformed line is an error naming file and line.
/// </summary>
public static class TaskData
{
    /// <summary>Reads one JSONL file; blank lines are skipped, an empty file is an error.</summary>
    public static List<TaskExample> ReadJsonl(string path)
    {
        if (!File.Exists(path)) throw new MeteoraException($"{path}: file not found");
        var examples = new List<TaskExample>();
        int lineNumber = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                using var doc = JsonDocument.Parse(line);
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object
                    || !root.TryGetProperty("prompt", out var p) || p.ValueKind != JsonValueKind.String
                    || !root.TryGetProperty("response", out var r) || r.ValueKind != JsonValueKind.String)
                    throw new MeteoraException($"{path}:{lineNumber}: expected an object with string fields \"prompt\" and \"response\"");
                examples.Add(new TaskExample(p.GetString()!, r.GetString()!));
            }
            catch (JsonException e)
            {
                throw new MeteoraException($"{path}:{lineNumber}: malformed JSON ({e.Message.Split('\n')[0]})");
            }
        }
        if (examples.Count == 0) throw new MeteoraException($"{path}: no examples (the dataset is empty)");
        return examples;
    }

    /// <summary>Names of the task folders (those holding train.jsonl) directly inside <paramref name="dataFolder"/>, in ordinal order.</summary>
    public static List<string> TaskNames(string dataFolder) =>
        Directory.GetDirectories(dataFolder).Where(d => File.Exists(Path.Combine(d, "train.jsonl")))
            .Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList();

    /// <summary>train.jsonl of a task folder.</summary>
    public static List<TaskExample> ReadTrain(string taskFolder) => ReadJsonl(Checked(taskFolder, "train.jsonl"));

    /// <summary>test.jsonl of a task folder, or null when it has none.</summary>
    public static List<TaskExample>? ReadTestIfPresent(string taskFolder)
    {
        string path = Path.Combine(taskFolder, "test.jsonl");
        return File.Exists(path) ? ReadJsonl(path) : null;
    }

    private static string Checked(string folder, string file)
    {
        if (!Directory.Exists(folder)) throw new MeteoraException($"{folder}: task folder not found");
        return Path.Combine(folder, file);
    }
}
