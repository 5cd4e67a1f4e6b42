using System.Runtime.InteropServices;

namespace Meteora.Runtime;

/// <summary>
/// CUDA events without timing, to tell from another thread whether the work enqueued before them on a stream has
/// finished (the NCCL watchdog). Bound from the libcudart libtorch loaded (<see cref="CudaRuntime"/>).
/// </summary>
internal static unsafe class CudaEvents
{
    private const uint DisableTiming = 2;
    private const int NotReady = 600;

    private sealed class Api
    {
        public delegate* unmanaged[Cdecl]<IntPtr*, uint, int> CreateWithFlags;
        public delegate* unmanaged[Cdecl]<IntPtr, IntPtr, int> Record;
        public delegate* unmanaged[Cdecl]<IntPtr, int> Query;
        public delegate* unmanaged[Cdecl]<IntPtr, int> Destroy;
    }

    private static readonly Lazy<Api?> Bound = new(() =>
    {
        var p = new[] { "cudaEventCreateWithFlags", "cudaEventRecord", "cudaEventQuery", "cudaEventDestroy" }.Select(CudaRuntime.Export).ToArray();
        if (p.Any(a => a == IntPtr.Zero)) return null;
        return new Api
        {
            CreateWithFlags = (delegate* unmanaged[Cdecl]<IntPtr*, uint, int>)p[0],
            Record = (delegate* unmanaged[Cdecl]<IntPtr, IntPtr, int>)p[1],
            Query = (delegate* unmanaged[Cdecl]<IntPtr, int>)p[2],
            Destroy = (delegate* unmanaged[Cdecl]<IntPtr, int>)p[3],
        };
    });

    private static Api Require() => Bound.Value ?? throw new MeteoraException("CUDA runtime (libcudart) not found: events need a CUDA build of libtorch");

    public static IntPtr Create()
    {
        IntPtr ev;
        int r = Require().CreateWithFlags(&ev, DisableTiming);
        if (r != 0) throw new MeteoraException($"cudaEventCreateWithFlags failed with CUDA error {r}");
        return ev;
    }

    /// <summary>Records <paramref name="ev"/> on <paramref name="stream"/> (0: the legacy default stream).</summary>
    public static void Record(IntPtr ev, IntPtr stream)
    {
        int r = Require().Record(ev, stream);
        if (r != 0) throw new MeteoraException($"cudaEventRecord failed with CUDA error {r}");
    }

    /// <summary>Whether everything enqueued before the event has run (an error also counts as done: it surfaces elsewhere).</summary>
    public static bool Done(IntPtr ev) => Require().Query(ev) != NotReady;

    public static void Destroy(IntPtr ev) => Require().Destroy(ev);
}
