using System.Runtime.InteropServices;

namespace Meteora.Runtime;

/// <summary>
/// The few CUDA runtime calls TorchSharp does not expose, bound at run time from the libcudart that libtorch has
/// already loaded: device memory info, the current device, events for timing on the default stream, and the statistics of the
/// default memory pool (which PyTorch allocates from when run with
/// <c>PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync</c>).
/// </summary>
internal static class CudaRuntime
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] private delegate int MemGetInfoFn(out nuint free, out nuint total);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] private delegate int SetDeviceFn(int device);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] private delegate int EventCreateFn(out IntPtr ev);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] private delegate int EventRecordFn(IntPtr ev, IntPtr stream);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] private delegate int EventSyncFn(IntPtr ev);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] private delegate int EventElapsedFn(out float ms, IntPtr start, IntPtr end);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] private delegate int EventDestroyFn(IntPtr ev);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] private delegate int DefaultPoolFn(out IntPtr pool, int device);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] private delegate int PoolGetFn(IntPtr pool, int attr, out ulong value);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] private delegate int PoolSetFn(IntPtr pool, int attr, ref ulong value);

    private const int PoolAttrUsedMemCurrent = 7, PoolAttrUsedMemHigh = 8;

    private static readonly Lazy<IntPtr> Library = new(() =>
    {
        foreach (var name in new[] { "libcudart.so.13", "libcudart.so.12", "libcudart.so" })
            if (NativeLibrary.TryLoad(name, out var lib)) return lib;
        return IntPtr.Zero;
    });

    /// <summary>The address of a libcudart export, or zero without CUDA.</summary>
    internal static IntPtr Export(string name) =>
        Library.Value != IntPtr.Zero && NativeLibrary.TryGetExport(Library.Value, name, out var p) ? p : IntPtr.Zero;

    private static T? Fn<T>(string name) where T : Delegate =>
        Library.Value != IntPtr.Zero && NativeLibrary.TryGetExport(Library.Value, name, out var p) ? Marshal.GetDelegateForFunctionPointer<T>(p) : null;

    private static readonly Lazy<MemGetInfoFn?> MemGetInfo = new(() => Fn<MemGetInfoFn>("cudaMemGetInfo"));
    private static readonly Lazy<SetDeviceFn?> SetDeviceCall = new(() => Fn<SetDeviceFn>("cudaSetDevice"));

    /// <summary>Makes <paramref name="device"/> the calling thread's current CUDA device (cudaSetDevice; the current device is per thread).</summary>
    public static void SetDevice(int device)
    {
        var f = SetDeviceCall.Value ?? throw new MeteoraException("CUDA runtime (libcudart) not found: cudaSetDevice needs a CUDA build of libtorch");
        int r = f(device);
        if (r != 0) throw new MeteoraException($"cudaSetDevice({device}) failed with CUDA error {r}");
    }
    private static readonly Lazy<(EventCreateFn, EventRecordFn, EventSyncFn, EventElapsedFn, EventDestroyFn)?> Events = new(() =>
        Fn<EventCreateFn>("cudaEventCreate") is { } c && Fn<EventRecordFn>("cudaEventRecord") is { } r && Fn<EventSyncFn>("cudaEventSynchronize") is { } s
        && Fn<EventElapsedFn>("cudaEventElapsedTime") is { } e && Fn<EventDestroyFn>("cudaEventDestroy") is { } d ? (c, r, s, e, d) : null);
    private static readonly Lazy<(IntPtr Pool, PoolGetFn Get, PoolSetFn Set)?> Pool = new(() =>
    {
        if (Fn<DefaultPoolFn>("cudaDeviceGetDefaultMemPool") is not { } f || f(out var pool, 0) != 0) return null;
        return Fn<PoolGetFn>("cudaMemPoolGetAttribute") is { } g && Fn<PoolSetFn>("cudaMemPoolSetAttribute") is { } s ? (pool, g, s) : null;
    });

    /// <summary>Bytes in use on the device (all processes' contexts and reservations), or null without CUDA.</summary>
    public static long? DeviceUsedBytes() =>
        MemGetInfo.Value is { } f && f(out var free, out var total) == 0 ? (long)(total - free) : null;

    /// <summary>Whether events can be used for timing.</summary>
    public static bool HasEvents => Events.Value is not null;

    /// <summary>Milliseconds between two events recorded on the default stream around <paramref name="work"/>.</summary>
    public static double TimeMs(Action work)
    {
        var (create, record, sync, elapsed, destroy) = Events.Value ?? throw new InvalidOperationException("CUDA events are not available");
        create(out var start); create(out var end);
        try
        {
            record(start, IntPtr.Zero);
            work();
            record(end, IntPtr.Zero);
            sync(end);
            elapsed(out float ms, start, end);
            return ms;
        }
        finally
        {
            destroy(start); destroy(end);
        }
    }

    /// <summary>
    /// Bytes allocated from the default memory pool now, or null when PyTorch does not allocate from it (the
    /// native caching allocator is in use: set PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync).
    /// </summary>
    public static long? PoolUsedBytes() =>
        Pool.Value is { } p && p.Get(p.Pool, PoolAttrUsedMemCurrent, out var v) == 0 && v > 0 ? (long)v : null;

    /// <summary>
    /// Whether PyTorch was asked to allocate from the cudaMallocAsync pool (so <see cref="PoolPeakBytes"/> will have
    /// figures once something is allocated; before that the pool reads as empty).
    /// </summary>
    public static bool PoolAllocatorRequested =>
        Environment.GetEnvironmentVariable("PYTORCH_CUDA_ALLOC_CONF")?.Contains("cudaMallocAsync", StringComparison.Ordinal) == true;

    /// <summary>High-water mark of <see cref="PoolUsedBytes"/> since the last <see cref="ResetPoolPeak"/>.</summary>
    public static long? PoolPeakBytes() =>
        Pool.Value is { } p && p.Get(p.Pool, PoolAttrUsedMemHigh, out var v) == 0 && v > 0 ? (long)v : null;

    public static void ResetPoolPeak()
    {
        if (Pool.Value is not { } p) return;
        ulong zero = 0;
        p.Set(p.Pool, PoolAttrUsedMemHigh, ref zero);
    }
}
