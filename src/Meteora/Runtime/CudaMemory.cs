using System.Runtime.InteropServices;

namespace Meteora.Runtime;

/// <summary>
/// Device memory in use, from the CUDA runtime's <c>cudaMemGetInfo</c> (libtorch already has libcudart loaded;
/// TorchSharp exposes no allocator statistics). "Used" covers the whole device: this process's CUDA context and
/// everything PyTorch's caching allocator has reserved — which it keeps, so the value after a run is its peak.
/// </summary>
public static class CudaMemory
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int MemGetInfo(out nuint free, out nuint total);

    private static readonly Lazy<MemGetInfo?> Function = new(Resolve);

    private static MemGetInfo? Resolve()
    {
        foreach (var name in new[] { "libcudart.so.13", "libcudart.so.12", "libcudart.so" })
            if (NativeLibrary.TryLoad(name, out var lib) && NativeLibrary.TryGetExport(lib, "cudaMemGetInfo", out var fn))
                return Marshal.GetDelegateForFunctionPointer<MemGetInfo>(fn);
        return null;
    }

    /// <summary>Bytes in use on the current device, or null where the CUDA runtime is not available.</summary>
    public static long? UsedBytes()
    {
        var f = Function.Value;
        if (f is null || f(out var free, out var total) != 0) return null;
        return (long)(total - free);
    }
}
