// Tests share libtorch's global RNG (dropout, manual_seed) and the machine's two cores: run them one at a time
// so seeded runs are reproducible and timing-insensitive.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Meteora.Tests
{
    internal static class TestHost
    {
        /// <summary>The CLI's allocator settings for the test process too: the training tests run ~1.7× faster (see NativeHeap).</summary>
        [System.Runtime.CompilerServices.ModuleInitializer]
        internal static void KeepFreedMemory() => Meteora.Runtime.NativeHeap.KeepFreedMemory();
    }
}
