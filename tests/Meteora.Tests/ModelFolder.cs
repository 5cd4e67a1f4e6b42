using System.Text.Json.Nodes;
using Meteora.IO;
using static TorchSharp.torch;

namespace Meteora.Tests;

/// <summary>Copies of the fixture base model in a temp folder, to be edited into broken or variant models.</summary>
public static class ModelFolder
{
    /// <summary>Copies every file of the fixture base into <paramref name="dir"/>/<paramref name="name"/>.</summary>
    public static string CopyBase(TempDir dir, string name = "model")
    {
        string dest = dir[name];
        Directory.CreateDirectory(dest);
        foreach (var f in Directory.GetFiles(Fixture.Base)) File.Copy(f, Path.Combine(dest, Path.GetFileName(f)));
        foreach (var f in Directory.GetFiles(dest)) File.SetAttributes(f, FileAttributes.Normal);
        return dest;
    }

    /// <summary>Rewrites config.json through <paramref name="edit"/>.</summary>
    public static void EditConfig(string folder, Action<JsonObject> edit)
    {
        string path = Path.Combine(folder, "config.json");
        var root = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(root);
        File.WriteAllText(path, root.ToJsonString());
    }

    /// <summary>All tensors of the folder's model.safetensors, in file order.</summary>
    public static List<KeyValuePair<string, Tensor>> ReadWeights(string folder)
    {
        using var f = SafeTensorsFile.Open(Path.Combine(folder, "model.safetensors"));
        return f.LoadAll();
    }
}
