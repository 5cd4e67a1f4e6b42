using System.Runtime.InteropServices;

namespace Meteora.Runtime;

/// <summary>
/// Finds C and C++ functions that TorchSharp does not wrap in the native libraries already in the process (libtorch,
/// c10, the CUDA driver, NVRTC): the first candidate library that loads and exports every symbol asked for wins,
/// so a library of another version that lacks one is passed over rather than half bound.
/// </summary>
internal static class NativeExports
{
    /// <summary>libtorch's CPU library (ATen, the global context).</summary>
    public static readonly string[] TorchCpu = ["libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"];
    /// <summary>libtorch's CUDA library (at::cuda).</summary>
    public static readonly string[] TorchCuda = ["libtorch_cuda.so", "libtorch_cuda.dylib", "torch_cuda.dll"];
    /// <summary>c10's CUDA library (streams).</summary>
    public static readonly string[] C10Cuda = ["libc10_cuda.so", "libc10_cuda.dylib", "c10_cuda.dll"];
    /// <summary>The CUDA driver API.</summary>
    public static readonly string[] CudaDriver = ["libcuda.so.1", "libcuda.so"];

    /// <summary>
    /// The addresses of <paramref name="symbols"/>, in their order, and the candidate they came from; null when no
    /// candidate in <paramref name="libraries"/> (names or paths, tried in order) loads and exports them all.
    /// </summary>
    public static (IntPtr[] Addresses, string Library)? Bind(IEnumerable<string> libraries, params string[] symbols)
    {
        foreach (var name in libraries)
        {
            if (!NativeLibrary.TryLoad(name, out var lib)) continue;
            var addresses = new IntPtr[symbols.Length];
            if (symbols.Select((s, i) => NativeLibrary.TryGetExport(lib, s, out addresses[i])).All(found => found))
                return (addresses, name);
        }
        return null;
    }
}
