using Meteora.Moe;
using Meteora.Runtime;

namespace Meteora.Tests.Moe;

/// <summary>A fact that runs only where libnvrtc can be loaded; elsewhere it is reported as skipped, with the reason.</summary>
public sealed class NvrtcFactAttribute : FactAttribute
{
    public NvrtcFactAttribute()
    {
        if (!Nvrtc.Available) Skip = "needs NVRTC (libnvrtc from a CUDA toolkit on the loader path or under CUDA_HOME); the device machine has it";
    }
}

/// <summary>Checks that one of our NVRTC sources compiles for the GPUs we run on.</summary>
public static class CubinAssert
{
    /// <summary>
    /// Compiles <paramref name="source"/> for Hopper (sm_90) and Ampere (sm_80) and asserts each result is a CUBIN (an
    /// ELF image) that holds every entry point named; returns the CUBINs for further checks.
    /// </summary>
    public static IReadOnlyList<byte[]> CompilesForHopperAndAmpere(string source, string file, params string[] entryPoints)
    {
        var cubins = new List<byte[]>();
        foreach (var (major, minor) in new[] { (9, 0), (8, 0) })
        {
            var cubin = Nvrtc.CompileToCubin(source, file, major, minor);
            Assert.Equal(new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F' }, cubin[..4]);   // a CUBIN is an ELF image
            var text = System.Text.Encoding.ASCII.GetString(cubin);
            foreach (var name in entryPoints) Assert.Contains(name, text);
            cubins.Add(cubin);
        }
        return cubins;
    }
}

/// <summary>The fused routing kernel's source: it must compile for the GPUs we run on (Hopper and Ampere).</summary>
public class RoutingKernelTests
{
    [NvrtcFact]
    public void TheKernelCompilesForHopperAndAmpere()
    {
        foreach (var cubin in CubinAssert.CompilesForHopperAndAmpere(RoutingKernel.Source, "meteora_route_bf16.cu", "meteora_route_bf16", "meteora_route_rows_bf16"))
            Assert.True(cubin.Length > 1000, $"{cubin.Length}-byte CUBIN");
    }

    [NvrtcFact]
    public void ACompileErrorNamesTheFileAndTheCause()
    {
        var e = Assert.Throws<MeteoraException>(() => Nvrtc.CompileToCubin("extern \"C\" __global__ void k() { undefined_thing(); }", "broken.cu", 9, 0));
        Assert.Contains("broken.cu", e.Message);
        Assert.Contains("undefined_thing", e.Message);
    }

    [Fact]
    public void OnTheCpuTheDenseRoutingSaysItUsesAtenOps() =>
        Assert.Equal("ATen routing ops (CPU)", RoutingKernel.Describe(TorchSharp.torch.CPU));
}
