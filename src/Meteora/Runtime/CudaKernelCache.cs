namespace Meteora.Runtime;

/// <summary>
/// The entry points of one NVRTC source, compiled and loaded per CUDA device on first use (<see cref="CudaKernel.Load"/>),
/// each with a status line for `bench` output and logs: the kernels that run, or the fallback and why the kernels could
/// not be built here (no driver, no NVRTC, a compile error). A failure is remembered, so the fallback costs one lookup.
/// Shared by the routing, fused elementwise and decode-attention kernels.
/// </summary>
/// <param name="source">The CUDA source (its <c>extern "C"</c> entry points are loaded by name).</param>
/// <param name="kernels">What the kernels are called in a status line, e.g. "fused routing kernel".</param>
/// <param name="fallback">What runs instead, e.g. "ATen routing ops".</param>
/// <param name="unavailable">What the failure line calls the kernels, e.g. "fused kernel" (… unavailable: why).</param>
internal sealed class CudaKernelCache(string source, string kernels, string fallback, string unavailable)
{
    private readonly object _gate = new();
    private readonly Dictionary<(int Device, string Name), (CudaKernel? Kernel, string Status)> _loaded = [];

    /// <summary>
    /// Entry point <paramref name="name"/> on CUDA device <paramref name="device"/>, or null when it cannot be built here;
    /// <paramref name="status"/> says which runs and why.
    /// </summary>
    public CudaKernel? Get(int device, string name, out string status)
    {
        lock (_gate)
        {
            if (!_loaded.TryGetValue((device, name), out var entry))
            {
                try
                {
                    var kernel = CudaKernel.Load(source, name, device);
                    entry = (kernel, $"{kernels} ({kernel.Architecture}, NVRTC from {Nvrtc.Location})");
                }
                catch (MeteoraException e)
                {
                    entry = (null, $"{fallback} ({unavailable} unavailable: {e.Message})");
                }
                _loaded[(device, name)] = entry;
            }
            status = entry.Status;
            return entry.Kernel;
        }
    }
}
