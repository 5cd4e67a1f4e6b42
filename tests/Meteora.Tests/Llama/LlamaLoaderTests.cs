using System.Text.Json;
using Meteora.IO;
using Meteora.Llama;
using static TorchSharp.torch;

namespace Meteora.Tests.Llama;

public class LlamaLoaderTests
{
    private static Tensor Prompt => tensor(Fixture.PromptIds(1).Select(i => (long)i).ToArray(), [1, Fixture.PromptIds(1).Length]);

    [Fact]
    public void ShardedCheckpointGivesTheSameLogits()
    {
        using var dir = Fixture.TempDir();
        string folder = ModelFolder.CopyBase(dir);
        var weights = ModelFolder.ReadWeights(folder);
        File.Delete(Path.Combine(folder, "model.safetensors"));
        var half = weights.Count / 2;
        SafeTensorsWriter.Write(Path.Combine(folder, "model-00001-of-00002.safetensors"), weights.Take(half));
        SafeTensorsWriter.Write(Path.Combine(folder, "model-00002-of-00002.safetensors"), weights.Skip(half));
        var map = weights.Select((w, i) => (w.Key, File: i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors"))
            .ToDictionary(x => x.Key, x => x.File);
        File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"),
            JsonSerializer.Serialize(new { metadata = new { total_size = 0 }, weight_map = map }));

        using var _ = no_grad();
        using var sharded = LlamaLoader.Load(folder, CPU, ScalarType.Float32);
        TensorAssert.Close(Fixture.Tensor("base.logits.1"), sharded.forward(Prompt)[0], 1e-3, "sharded");
    }

    [Fact]
    public void TiedEmbeddingsUseTheEmbeddingMatrixAsTheHead()
    {
        using var dir = Fixture.TempDir();
        string folder = ModelFolder.CopyBase(dir);
        var weights = ModelFolder.ReadWeights(folder);
        var embed = weights.Single(w => w.Key == "model.embed_tokens.weight").Value;
        SafeTensorsWriter.Write(Path.Combine(folder, "model.safetensors"), weights.Where(w => w.Key != "lm_head.weight"));
        ModelFolder.EditConfig(folder, c => c["tie_word_embeddings"] = true);

        using var _ = no_grad();
        using var tied = LlamaLoader.Load(folder, CPU, ScalarType.Float32);
        Assert.Null(tied.lm_head);
        using var untied = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.Float32);
        untied.lm_head!.copy_(embed);
        TensorAssert.Close(untied.forward(Prompt), tied.forward(Prompt), 1e-5, "tied");
    }

    [Fact]
    public void AModelBuiltInsideADisposeScopeOutlivesIt()
    {
        Meteora.Moe.MeteoraModel m;
        using (var scope = NewDisposeScope())
            m = Meteora.Moe.MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        using var _ = no_grad();
        using (m)
            TensorAssert.Close(Fixture.Tensor("meteora.k2.T1.logits.1"), m.Forward(Prompt)[0], 1e-3, "after the scope");
    }

    [Fact]
    public void HalfPrecisionCheckpointsLoadIntoFloat32()
    {
        using var dir = Fixture.TempDir();
        string folder = ModelFolder.CopyBase(dir);
        var weights = ModelFolder.ReadWeights(folder);
        SafeTensorsWriter.Write(Path.Combine(folder, "model.safetensors"),
            weights.Select(w => new KeyValuePair<string, Tensor>(w.Key, w.Value.to(ScalarType.Float16))));
        using var _ = no_grad();
        using var lm = LlamaLoader.Load(folder, CPU, ScalarType.Float32);
        // float16 storage costs about 3 decimal digits; the logits stay close to the float32 ones.
        TensorAssert.Close(Fixture.Tensor("base.logits.1"), lm.forward(Prompt)[0], 5e-2, "fp16 weights");
    }
}
