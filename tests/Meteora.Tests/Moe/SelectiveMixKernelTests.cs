using Meteora.Benchmarking;
using Meteora.Moe;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Tests.Moe;

/// <summary>The selective mix kernels (MeteoRA at decode sizes): they compile for our GPUs and, on CUDA, give the dense path's output.</summary>
public class SelectiveMixKernelTests
{
    [NvrtcFact]
    public void TheKernelsCompileForHopperAndAmpere()
    {
        foreach (var cubin in CubinAssert.CompilesForHopperAndAmpere(SelectiveMixKernel.Source, "meteora_selective_mix.cu", "meteora_shrink_bf16", "meteora_expand_bf16"))
            Assert.True(cubin.Length > 1000, $"{cubin.Length}-byte CUBIN");
    }

    [Fact]
    public void OnTheCpuMeteoraMixesOnTheFusedGemm() =>
        Assert.Equal("the fused GEMM's dense mix (CPU)", SelectiveMixKernel.Describe(CPU));

    [Fact]
    public void OnTheCpuTheProjectionGivesTheSameOutputWithTheKernelsSwitchedOnOrOff()
    {
        // On the CPU the switch must change nothing (the kernels are CUDA-only): the dense path runs either way.
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        manual_seed(3);
        var routing = new RoutingOptions { TopK = 2 };
        using var layer = LayerBenchmark.Build(64, 48, 6, 8, routing, CPU, ScalarType.Float32);
        var x = randn(3, 64);
        bool was = SelectiveMixKernel.Enabled;
        try
        {
            SelectiveMixKernel.Enabled = true;
            var on = layer.forward(x);
            SelectiveMixKernel.Enabled = false;
            var off = layer.forward(x);
            Assert.True(on.eq(off).all().item<bool>());
        }
        finally { SelectiveMixKernel.Enabled = was; }
    }

    [CudaFact]
    public void OnCudaItGivesTheFusedGemmPathsOutputAtDecodeSizes()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        manual_seed(11);
        var routing = new RoutingOptions { TopK = 2 };
        // An 8B-shaped projection with 28 adapters of rank 8, as `bench model` runs them.
        using var layer = LayerBenchmark.Build(4096, 1024, 28, 8, routing, CUDA, ScalarType.BFloat16);
        bool was = SelectiveMixKernel.Enabled;
        try
        {
            foreach (int n in new[] { 1, 5, 16 })
            {
                var x = randn(n, 4096, ScalarType.BFloat16, CUDA);
                SelectiveMixKernel.Enabled = true;
                var on = layer.forward(x).to(ScalarType.Float32);
                SelectiveMixKernel.Enabled = false;
                var off = layer.forward(x).to(ScalarType.Float32);
                // The same adapters and weights; only float32 summation order differs: one bfloat16 rounding of the output.
                var diff = (on - off).abs();
                Assert.True(diff.le(off.abs() * (1.0 / 128) + 1e-3).all().item<bool>(), $"N = {n}: max |on − off| {diff.max().item<float>()}");
            }
        }
        finally { SelectiveMixKernel.Enabled = was; }
    }
}
