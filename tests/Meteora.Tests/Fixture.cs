using System.Text.Json;
using Meteora.IO;
using static TorchSharp.torch;

namespace Meteora.Tests;

/// <summary>Paths and reference values of ../shared/fixtures/tiny-llama3 (produced by transformers).</summary>
public static class Fixture
{
    public static readonly string RepoRoot = FindRepoRoot();
    public static readonly string Root = Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "fixtures", "tiny-llama3"));
    public static string Base => Path.Combine(Root, "base");
    public static string Adapter(string name) => Path.Combine(Root, "adapters", name);
    public static string Meteora => Path.Combine(Root, "meteora");

    private static readonly Lazy<JsonElement> ReferenceJson = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, "reference.json"))).RootElement);

    public static JsonElement Reference => ReferenceJson.Value;

    /// <summary>Token ids of reference prompt <paramref name="i"/> (BOS included).</summary>
    public static int[] PromptIds(int i) => Ints(Reference.GetProperty("prompts")[i].GetProperty("ids"));

    public static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();

    /// <summary>A float32 reference tensor by name, on the CPU.</summary>
    public static Tensor Tensor(string name)
    {
        using var file = SafeTensorsFile.Open(Path.Combine(Root, "reference.safetensors"));
        return file.Load(name);
    }

    /// <summary>A fresh temporary folder, removed by the caller's <c>using</c>.</summary>
    public static TempDir TempDir() => new();

    private static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "Meteora.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Meteora.slnx not found above the test binaries");
    }
}

/// <summary>A temporary folder deleted on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "meteora-test-" + Guid.NewGuid().ToString("N")[..12]);
    public TempDir() => Directory.CreateDirectory(Path);
    public string this[string name] => System.IO.Path.Combine(Path, name);
    public void Dispose() { try { Directory.Delete(Path, true); } catch (IOException) { } }
}
