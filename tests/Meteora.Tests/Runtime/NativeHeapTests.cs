using Meteora.Runtime;

namespace Meteora.Tests.Runtime;

public class NativeHeapTests
{
    [Fact]
    public void GlibcAcceptsTheAllocatorSettingsOnLinux()
    {
        // On glibc every mallopt call must succeed (a refused value, e.g. a threshold above glibc's maximum, reads false).
        Assert.Equal(OperatingSystem.IsLinux(), NativeHeap.KeepFreedMemory());
        using var t = TorchSharp.torch.ones(1 << 20);   // libtorch allocates normally afterwards
        Assert.Equal(1 << 20, t.sum().item<float>());
    }
}
