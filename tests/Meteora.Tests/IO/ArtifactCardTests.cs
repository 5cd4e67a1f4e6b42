using Meteora.IO;
using Meteora.Lora;
using Meteora.Llama;

namespace Meteora.Tests.IO;

public class ArtifactCardTests
{
    [Fact]
    public void SealedAdapterVerifiesAndADamagedOneIsAOneLineErrorWithTheRebuildCommand()
    {
        using var dir = Fixture.TempDir();
        string adapter = dir["a"];
        Directory.CreateDirectory(adapter);
        foreach (var f in Directory.GetFiles(Fixture.Adapter("reverse"))) File.Copy(f, Path.Combine(adapter, Path.GetFileName(f)));
        var config = LlamaConfig.Load(Fixture.Base);
        var hashes = ArtifactCard.Seal(adapter, "./meteora demo --from-scratch --device cuda");
        Assert.Contains("adapter_model.safetensors", hashes.Keys);
        Assert.DoesNotContain(ArtifactCard.FileName, hashes.Keys);
        using (LoraAdapter.Load(adapter, config)) { }

        File.AppendAllText(Path.Combine(adapter, "adapter_config.json"), " ");
        var e = Assert.Throws<MeteoraException>(() => LoraAdapter.Load(adapter, config));
        Assert.Contains("adapter_config.json: SHA-256 mismatch", e.Message);
        Assert.Contains("./meteora demo --from-scratch --device cuda", e.Message);

        File.WriteAllText(Path.Combine(adapter, ArtifactCard.FileName), "{\"sha256\": 3}");
        e = Assert.Throws<MeteoraException>(() => LoraAdapter.Load(adapter, config));
        Assert.Contains("invalid model card", e.Message);

        // Folders without a card are not checked.
        File.Delete(Path.Combine(adapter, ArtifactCard.FileName));
        using (LoraAdapter.Load(adapter, config)) { }

        // Saving new weights into a sealed folder removes the seal: the folder is then an ordinary one, not "damaged".
        ArtifactCard.Seal(adapter, "rebuild");
        using (var loaded = LoraAdapter.Load(adapter, config))
            LoraAdapter.Save(adapter, loaded.Config, loaded.Weights.Select(kv => (kv.Key, kv.Value.A, kv.Value.B * 2)));
        Assert.False(File.Exists(Path.Combine(adapter, ArtifactCard.FileName)));
        using (LoraAdapter.Load(adapter, config)) { }
    }

    [Fact]
    public void ShardedWriterSplitsAtTheLimitAndReplacesAnEarlierLayout()
    {
        using var dir = Fixture.TempDir();
        using var lm = LlamaLoader.Load(Fixture.Base, TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32);
        var tensors = lm.BaseWeights().Select(w => new KeyValuePair<string, TorchSharp.torch.Tensor>(w.Name, w.Tensor)).ToList();
        foreach (var f in Directory.GetFiles(Fixture.Base).Where(f => !f.EndsWith(".safetensors")))
            File.Copy(f, dir[Path.GetFileName(f)], overwrite: true);
        var one = ShardedCheckpointWriter.Write(dir.Path, tensors, 0);
        Assert.Equal([ShardedCheckpointWriter.SingleFile], one);
        long largest = tensors.Max(t => t.Value.numel() * 4);
        var many = ShardedCheckpointWriter.Write(dir.Path, tensors, largest);
        Assert.True(many.Count > 2);
        Assert.False(File.Exists(dir[ShardedCheckpointWriter.SingleFile]));   // the old layout is gone
        foreach (var shard in many.Where(s => s != ShardedCheckpointWriter.IndexFile))
            Assert.True(new FileInfo(dir[shard]).Length <= largest + 64 * 1024);
        using var back = LlamaLoader.Load(dir.Path, TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32);
        foreach (var ((_, a), (_, b)) in lm.BaseWeights().Zip(back.BaseWeights()))
            Assert.True(a.allclose(b, rtol: 0, atol: 0));
    }
}
