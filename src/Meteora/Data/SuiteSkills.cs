namespace Meteora.Data;

/// <summary>
/// The operations behind the built-in task suite and the random inputs they take. The suite (Evaluation.TaskSuite)
/// wraps each in a task's prompt format ("reverse: abc =>"); the tiny base's generic corpus (Training.GenericCorpus) states
/// the same facts in prose ("backwards, abc reads cba."), the way a real base model meets such facts in web text
/// before any adapter teaches it a task's format. Every task's input space holds at least 270 distinct prompts (suite
/// version 3): with fewer, a task's adapter sees the same few prompts in every batch and memorises them instead of
/// mapping its format onto what the base knows (docs/RESULTS.md, "Every task big enough to learn from").
/// </summary>
internal static class SuiteSkills
{
    private static readonly string[] Syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "po", "se", "vi", "zu", "da", "fe", "gi", "bo", "hu", "ja"];
    private static readonly string[] Items = ["apple", "stone", "coin", "shell", "leaf", "bell", "key", "cup", "pear", "nut", "box", "pin",
        "egg", "ring", "bowl", "cap", "drum", "fig", "hat", "jar", "lamp", "mug", "pen", "rope", "sock", "tin", "bead", "comb",
        "plum", "seed", "card", "bag", "nail", "bun", "rock", "fan"];
    private static readonly string[] Nouns = ["cat", "dog", "bird", "river", "stone", "tree", "house", "road", "star", "moon", "sun", "wind", "apple", "coin", "shell", "leaf", "bell", "key", "cup", "bread", "green", "quiet", "old", "red"];
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz";

    /// <summary>A made-up word of 2…3 syllables (or the range given).</summary>
    public static string Word(Random rng, int minSyllables = 2, int maxSyllables = 3) =>
        string.Concat(Enumerable.Range(0, rng.Next(minSyllables, maxSyllables + 1)).Select(_ => Syllables[rng.Next(Syllables.Length)]));

    /// <summary>A string of 3…5 random lower-case letters.</summary>
    public static string Letters(Random rng, int min = 3, int max = 5) =>
        new(Enumerable.Range(0, rng.Next(min, max + 1)).Select(_ => Alphabet[rng.Next(26)]).ToArray());

    public static string Reverse(string w) => new(w.Reverse().ToArray());
    public static string SortLetters(string w) => new(w.Order().ToArray());
    public static string Caesar(string w) => new(w.Select(c => (char)('a' + (c - 'a' + 1) % 26)).ToArray());
    public static string Devowel(string w) => new(w.Where(c => !"aeiou".Contains(c)).ToArray());

    /// <summary>Addends: a number below 60 and a digit (600 pairs).</summary>
    public static (int A, int B) AddPair(Random rng) => (rng.Next(0, 60), rng.Next(0, 10));
    /// <summary>Subtraction: a number below 60 minus a digit no larger than it (555 pairs).</summary>
    public static (int A, int B) SubtractPair(Random rng) { int a = rng.Next(0, 60); return (a, rng.Next(0, Math.Min(a, 9) + 1)); }
    /// <summary>Two different numbers below 100.</summary>
    public static (int A, int B) LargerPair(Random rng) { int a = rng.Next(0, 100), b; do b = rng.Next(0, 100); while (b == a); return (a, b); }
    /// <summary>2…4 words, each a noun or a made-up word.</summary>
    public static string[] Phrase(Random rng) =>
        Enumerable.Range(0, rng.Next(2, 5)).Select(_ => rng.Next(2) == 0 ? Nouns[rng.Next(Nouns.Length)] : Word(rng, 1, 2)).ToArray();
    public static string Initials(IEnumerable<string> words) => string.Concat(words.Select(w => w[0]));
    /// <summary>An item (one of 36) and how many times it is repeated (1…9): 324 prompts.</summary>
    public static (string Item, int Count) CountPair(Random rng) => (Items[rng.Next(Items.Length)], rng.Next(1, 10));
    /// <summary>1…3 English words of the lexicon.</summary>
    public static string[] TranslateWords(Random rng)
    {
        var keys = Lexicon.Keys.ToArray();
        return Enumerable.Range(0, rng.Next(1, 4)).Select(_ => keys[rng.Next(keys.Length)]).ToArray();
    }

    /// <summary>A fixed made-up lexicon (English word → invented word), the same for every seed.</summary>
    public static readonly IReadOnlyDictionary<string, string> Lexicon = BuildLexicon();

    private static Dictionary<string, string> BuildLexicon()
    {
        string[] english = ["cat", "dog", "sun", "moon", "tree", "river", "stone", "bird", "fire", "water", "house", "road", "star", "rain", "wind", "bread"];
        var rng = new Random(20250101);
        var used = new HashSet<string>();
        var map = new Dictionary<string, string>();
        foreach (var w in english)
        {
            string t;
            do t = Word(rng, 2, 2); while (!used.Add(t));
            map[w] = t;
        }
        return map;
    }

    public static string Translate(IEnumerable<string> words) => string.Join(' ', words.Select(w => Lexicon[w]));
}
