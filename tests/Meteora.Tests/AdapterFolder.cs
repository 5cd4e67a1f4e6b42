using System.Text.Json.Nodes;
using Meteora.IO;
using static TorchSharp.torch;

namespace Meteora.Tests;

/// <summary>Copies of fixture adapters in a temp folder, to be edited into broken or variant adapters.</summary>
public static class AdapterFolder
{
    public static string Copy(TempDir dir, string adapter, string? name = null)
    {
        string dest = dir[name ?? adapter];
        Directory.CreateDirectory(dest);
        foreach (var f in Directory.GetFiles(Fixture.Adapter(adapter)))
        {
            string to = Path.Combine(dest, Path.GetFileName(f));
            File.Copy(f, to);
            File.SetAttributes(to, FileAttributes.Normal);
        }
        return dest;
    }

    public static void EditConfig(string folder, Action<JsonObject> edit)
    {
        string path = Path.Combine(folder, "adapter_config.json");
        var root = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(root);
        File.WriteAllText(path, root.ToJsonString());
    }

    /// <summary>Rewrites adapter_model.safetensors through <paramref name="edit"/> on its (name, tensor) list.</summary>
    public static void EditWeights(string folder, Func<List<KeyValuePair<string, Tensor>>, IEnumerable<KeyValuePair<string, Tensor>>> edit)
    {
        string path = Path.Combine(folder, "adapter_model.safetensors");
        List<KeyValuePair<string, Tensor>> list;
        using (var f = SafeTensorsFile.Open(path))
            list = f.LoadAll();
        SafeTensorsWriter.Write(path, edit(list).ToList());
    }
}
