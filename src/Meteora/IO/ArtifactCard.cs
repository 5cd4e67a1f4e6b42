using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Meteora.IO;

/// <summary>
/// The seal of a shipped model folder: <c>meteora-card.json</c> holds the SHA-256 of every file in the folder and
/// the command that rebuilds it. Loaders call <see cref="VerifyIfPresent"/>, so a missing or damaged file of a
/// shipped model is a one-line error naming the file and that command, never a wrong model. Folders without a
/// card (anything a user trains) are not checked.
/// </summary>
public static class ArtifactCard
{
    /// <summary>The seal's file name inside a sealed folder.</summary>
    public const string FileName = "meteora-card.json";
    /// <summary>Files that describe the folder and are not sealed: the card itself and the human-readable model card.</summary>
    private static readonly HashSet<string> Unsealed = [FileName, "README.md"];

    /// <summary>SHA-256 (lower-case hex) of every sealed file under <paramref name="folder"/>, by path relative to it ('/' separated).</summary>
    public static SortedDictionary<string, string> Hashes(string folder)
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var path in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories))
        {
            string rel = Path.GetRelativePath(folder, path).Replace(Path.DirectorySeparatorChar, '/');
            if (Unsealed.Contains(rel) || rel.Split('/').Any(part => part.StartsWith('.'))) continue;
            result[rel] = Sha256(path);
        }
        return result;
    }

    /// <summary>SHA-256 of the file at <paramref name="path"/>, lower-case hex.</summary>
    public static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>Seals <paramref name="folder"/>: writes the card with every file's hash, <paramref name="rebuild"/> and <paramref name="details"/>.</summary>
    public static SortedDictionary<string, string> Seal(string folder, string rebuild, JsonObject? details = null)
    {
        var hashes = Hashes(folder);
        var card = new JsonObject
        {
            ["format"] = "meteora-card", ["version"] = 1, ["rebuild"] = rebuild,
            ["sha256"] = new JsonObject(hashes.Select(kv => new KeyValuePair<string, JsonNode?>(kv.Key, kv.Value))),
        };
        if (details is not null) card["details"] = details;
        AtomicFile.WriteAllText(Path.Combine(folder, FileName), card.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return hashes;
    }

    /// <summary>
    /// Removes the seal of <paramref name="folder"/>, if any: writers call it before writing new weights into a
    /// folder, so a re-saved folder is an ordinary (unchecked) one rather than a "damaged" shipped one.
    /// </summary>
    public static void Unseal(string folder)
    {
        string card = Path.Combine(folder, FileName);
        if (File.Exists(card)) File.Delete(card);
    }

    /// <summary>
    /// Checks a sealed folder: every file the card lists exists and has its hash. Throws a one-line
    /// <see cref="MeteoraException"/> naming the file and the rebuild command; does nothing without a card.
    /// </summary>
    public static void VerifyIfPresent(string folder)
    {
        string cardPath = Path.Combine(folder, FileName);
        if (!File.Exists(cardPath)) return;
        string rebuild;
        Dictionary<string, string> expected;
        try
        {
            var root = JsonNode.Parse(File.ReadAllText(cardPath)) as JsonObject ?? throw new JsonException("not an object");
            rebuild = root["rebuild"]?.GetValue<string>() ?? throw new JsonException("no \"rebuild\" string");
            expected = (root["sha256"] as JsonObject ?? throw new JsonException("no \"sha256\" object"))
                .ToDictionary(kv => kv.Key, kv => kv.Value?.GetValue<string>() ?? throw new JsonException($"sha256.{kv.Key} is not a string"));
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new MeteoraException($"{cardPath}: invalid model card ({e.Message.Split('\n')[0]})");
        }
        foreach (var (rel, hash) in expected)
        {
            if (rel.Contains("..") || Path.IsPathRooted(rel)) throw new MeteoraException($"{cardPath}: file name '{rel}' leaves the folder");
            string path = Path.Combine(folder, rel);
            if (!File.Exists(path))
                throw new MeteoraException($"{path}: missing (the shipped model is incomplete); rebuild it with: {rebuild}");
            string actual = Sha256(path);
            if (!string.Equals(actual, hash, StringComparison.OrdinalIgnoreCase))
                throw new MeteoraException($"{path}: SHA-256 mismatch (expected {hash[..Math.Min(12, hash.Length)]}…, found {actual[..12]}…): the file is damaged; rebuild it with: {rebuild}");
        }
    }
}
