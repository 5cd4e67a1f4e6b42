using System.Runtime.InteropServices;

namespace Meteora.Runtime;

/// <summary>
/// libtorch's current-CUDA-stream switch, which TorchSharp does not expose: every ATen op launches its kernels on
/// the thread's current stream, so pointing it at a side stream is how work gets captured into a CUDA graph
/// (graphs cannot be captured on the legacy default stream), and reading it is how our own kernels launch in
/// order with ATen's. Bound at run time from libc10_cuda by their Itanium-ABI names, like
/// <see cref="AttentionBackends"/>. <c>c10::cuda::CUDAStream</c> is 16 trivially copyable bytes (device, id),
/// passed and returned in two registers.
/// </summary>
internal static unsafe class CudaStreams
{
    /// <summary>A <c>c10::cuda::CUDAStream</c> by value.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct StreamValue
    {
        public long Device;   // c10::Device (type, index) and padding
        public long Id;       // c10::StreamId
    }

    private sealed class Api
    {
        public delegate* unmanaged[Cdecl]<byte, sbyte, StreamValue> FromPool;
        public delegate* unmanaged[Cdecl]<sbyte, StreamValue> Current;
        public delegate* unmanaged[Cdecl]<sbyte, StreamValue> Default;
        public delegate* unmanaged[Cdecl]<StreamValue, void> SetCurrent;
        public delegate* unmanaged[Cdecl]<StreamValue*, IntPtr> Handle;
    }

    private static readonly Lazy<Api?> Bound = new(() =>
    {
        if (NativeExports.Bind(NativeExports.C10Cuda, "_ZN3c104cuda17getStreamFromPoolEba", "_ZN3c104cuda20getCurrentCUDAStreamEa",
                "_ZN3c104cuda20getDefaultCUDAStreamEa", "_ZN3c104cuda20setCurrentCUDAStreamENS0_10CUDAStreamE",
                "_ZNK3c104cuda10CUDAStream6streamEv") is not { Addresses: var p })
            return null;
        return new Api
        {
            FromPool = (delegate* unmanaged[Cdecl]<byte, sbyte, StreamValue>)p[0],
            Current = (delegate* unmanaged[Cdecl]<sbyte, StreamValue>)p[1],
            Default = (delegate* unmanaged[Cdecl]<sbyte, StreamValue>)p[2],
            SetCurrent = (delegate* unmanaged[Cdecl]<StreamValue, void>)p[3],
            Handle = (delegate* unmanaged[Cdecl]<StreamValue*, IntPtr>)p[4],
        };
    });

    /// <summary>Whether this libtorch exports the stream functions (a CUDA build of libtorch 2.x).</summary>
    public static bool Available => Bound.Value is not null;

    private static Api Require() => Bound.Value ?? throw new MeteoraException("CUDA streams: this libtorch has no c10_cuda stream functions (a CPU-only build?)");

    /// <summary>The raw <c>cudaStream_t</c> that ATen launches on now (0 for the legacy default stream).</summary>
    public static IntPtr CurrentHandle(int device)
    {
        var api = Require();
        var s = api.Current((sbyte)device);
        return api.Handle(&s);
    }

    /// <summary>A stream from libtorch's pool (not the legacy default stream), to be made current with <see cref="Use"/>.</summary>
    public static StreamValue SideStream(int device) => Require().FromPool(0, (sbyte)device);

    /// <summary>
    /// Makes <paramref name="stream"/> current on this thread until the returned scope is disposed, which restores
    /// the stream that was current before.
    /// </summary>
    public static IDisposable Use(StreamValue stream, int device)
    {
        var api = Require();
        var before = api.Current((sbyte)device);
        api.SetCurrent(stream);
        return new Restore(before);
    }

    /// <summary>The raw <c>cudaStream_t</c> of <paramref name="stream"/>.</summary>
    public static IntPtr HandleOf(StreamValue stream) => Require().Handle(&stream);

    private static readonly Lazy<IntPtr> IsCapturingExport = new(() => CudaRuntime.Export("cudaStreamIsCapturing"));

    /// <summary>
    /// Whether work queued on the raw stream <paramref name="stream"/> is being captured into a CUDA graph now
    /// (<c>cudaStreamIsCapturing</c>; an invalidated capture counts as capturing). Throws where CUDA's runtime is missing.
    /// </summary>
    public static bool IsCapturing(IntPtr stream)
    {
        var f = (delegate* unmanaged[Cdecl]<IntPtr, int*, int>)IsCapturingExport.Value;
        if (f == null) throw new MeteoraException("CUDA runtime: cudaStreamIsCapturing not found");
        int status;                                             // cudaStreamCaptureStatus: 0 none, 1 active, 2 invalidated
        int r = f(stream, &status);
        if (r != 0) throw new MeteoraException($"cudaStreamIsCapturing failed with CUDA error {r}");
        return status != 0;
    }

    private sealed class Restore(StreamValue before) : IDisposable
    {
        private bool _done;
        public void Dispose()
        {
            if (_done) return;
            _done = true;
            Require().SetCurrent(before);
        }
    }
}
