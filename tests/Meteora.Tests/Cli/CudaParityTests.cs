using Meteora.Llama;
using static TorchSharp.torch;

namespace Meteora.Tests.Cli;

/// <summary>CUDA against the CPU reference (runs only where a GPU is present; skipped with a reason elsewhere).</summary>
public class CudaParityTests
{
    [CudaFact]
    public void Float32LogitsOnCudaMatchTheReference()
    {
        using var _ = no_grad();
        using var lm = LlamaLoader.Load(Fixture.Base, CUDA, ScalarType.Float32);
        for (int p = 0; p < 3; p++)
        {
            var ids = tensor(Fixture.PromptIds(p).Select(i => (long)i).ToArray(), [1, Fixture.PromptIds(p).Length], device: CUDA);
            TensorAssert.Close(Fixture.Tensor($"base.logits.{p}"), lm.forward(ids)[0].cpu(), 1e-3, $"cuda prompt {p}");
        }
    }
}
