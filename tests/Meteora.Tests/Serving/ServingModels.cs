using Meteora.Moe;
using Meteora.Serving;
using Meteora.Tokenization;
using static TorchSharp.torch;

namespace Meteora.Tests.Serving;

/// <summary>The shared tiny fixture as a served model (MeteoRA checkpoint, adapters reverse/add/upper, float32 CPU).</summary>
public static class ServingModels
{
    public static ServingModel TinyMeteora()
    {
        var m = MeteoraModel.Load(Fixture.Base, Fixture.Meteora, CPU, ScalarType.Float32);
        return new ServingModel(m.Model, m, HfTokenizer.Load(Fixture.Base), Fixture.Base, "gates");
    }
}
