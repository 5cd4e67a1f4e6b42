using Meteora.Llama;
using static TorchSharp.torch;

namespace Meteora.Tests;

/// <summary>The fixture's base model, float32 on the CPU, loaded once per test class (xUnit class fixture).</summary>
public sealed class FixtureBaseModel : IDisposable
{
    public LlamaForCausalLM Lm { get; } = LlamaLoader.Load(Fixture.Base, CPU, ScalarType.Float32);
    public void Dispose() => Lm.Dispose();
}
