using System.Runtime.InteropServices;

namespace Meteora.Runtime;

/// <summary>
/// Tunes glibc's allocator for libtorch on the CPU. By default glibc hands blocks above its (adaptive) mmap
/// threshold straight back to the kernel and trims the top of the heap, so a training step — which frees and
/// reallocates the same activation sizes every step — page-faults all of its memory back in: on the 2-core
/// machine the tiny base's pretraining spent 60 % of its CPU time in the kernel and ran at 10 k tokens/s; with
/// freed memory kept for reuse it runs at 17 k tokens/s. The same settings can be given to any process as
/// <c>MALLOC_MMAP_THRESHOLD_</c>, <c>MALLOC_TRIM_THRESHOLD_</c> and <c>MALLOC_TOP_PAD_</c>. For CPU work only: in
/// CUDA processes, whose tensors are not on this heap, the same settings slowed host-bound decoding (H200, base
/// decode at batch 1: 31–33 vs 40–53 tokens/s in alternating runs), so the CLI applies them for --device cpu.
/// </summary>
internal static class NativeHeap
{
    private const int M_TRIM_THRESHOLD = -1, M_TOP_PAD = -2, M_MMAP_THRESHOLD = -3;

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int Mallopt(int param, int value);

    /// <summary>
    /// Keeps freed memory in the process: blocks up to 32 MiB (glibc's largest mmap threshold) come from the heap,
    /// and the heap is trimmed only when 1 GiB at its top is free. Returns false where this is not glibc (other
    /// operating systems, musl) or glibc refused a setting; nothing changes then.
    /// </summary>
    public static bool KeepFreedMemory()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            return Mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
                & Mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
                & Mallopt(M_TOP_PAD, 64 << 20) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }
}
