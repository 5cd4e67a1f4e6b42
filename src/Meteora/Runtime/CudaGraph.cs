using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Runtime;

/// <summary>
/// A CUDA graph captured from ATen work and replayed with one launch: libtorch's <c>at::cuda::CUDAGraph</c>
/// (which TorchSharp does not expose), bound from libtorch_cuda by its Itanium-ABI names. Capturing through
/// libtorch rather than raw <c>cudaStreamBeginCapture</c> matters: <c>capture_begin</c> tells the caching
/// allocator to serve the capture from a private pool, so memory the graph uses is never handed to other work,
/// and registers the CUDA generators so random ops replay correctly.
/// <para>
/// Replays read and write the very addresses used while capturing: inputs must be copied into tensors that
/// outlive the graph, outputs read from tensors created inside the capture and kept alive; host values (shapes,
/// Python-side branches) are frozen at capture time. A decode step qualifies once its KV-cache slot and
/// position are device tensors (<see cref="Generation.StaticDecoder"/>).
/// </para>
/// <para>
/// The symbol names are libtorch 2.11's; <c>bench/probe/inventory.sh</c> lists what a machine's libtorch exports
/// (and sizeof(CUDAGraph)) when a new version needs checking.
/// </para>
/// </summary>
internal sealed unsafe class CudaGraph : IDisposable
{
    // sizeof(at::cuda::CUDAGraph) is 104 bytes in libtorch 2.11; the object lives in a larger zeroed block so
    // a libtorch that adds members does not write past it.
    private const int ObjectBytes = 1024;
    private const int CaptureModeThreadLocal = 1;   // cudaStreamCaptureModeThreadLocal: other threads' CUDA calls stay legal

    [StructLayout(LayoutKind.Sequential)]
    private struct MempoolId { public ulong First, Second; }   // std::pair<unsigned long long, unsigned long long>; {0, 0} = a new private pool

    private sealed class Api
    {
        public delegate* unmanaged[Cdecl]<IntPtr, byte, void> Construct;
        public delegate* unmanaged[Cdecl]<IntPtr, void> Destroy;
        public delegate* unmanaged[Cdecl]<IntPtr, MempoolId, int, void> CaptureBegin;
        public delegate* unmanaged[Cdecl]<IntPtr, void> CaptureEnd;
        public delegate* unmanaged[Cdecl]<IntPtr, void> Replay;
        public delegate* unmanaged[Cdecl]<IntPtr, IntPtr*, int> StreamEndCapture;   // cudart, for a failed capture
        public delegate* unmanaged[Cdecl]<IntPtr, int> GraphDestroy;
    }

    private static readonly Lazy<Api?> Bound = new(() =>
    {
        if (!CudaStreams.Available) return null;
        if (NativeExports.Bind(NativeExports.TorchCuda, "_ZN2at4cuda9CUDAGraphC1Eb", "_ZN2at4cuda9CUDAGraphD1Ev",
                "_ZN2at4cuda9CUDAGraph13capture_beginESt4pairIyyE21cudaStreamCaptureMode", "_ZN2at4cuda9CUDAGraph11capture_endEv",
                "_ZN2at4cuda9CUDAGraph6replayEv") is not { Addresses: var p })
            return null;
        IntPtr endCapture = CudaRuntime.Export("cudaStreamEndCapture"), graphDestroy = CudaRuntime.Export("cudaGraphDestroy");
        if (endCapture == IntPtr.Zero || graphDestroy == IntPtr.Zero) return null;
        return new Api
        {
            Construct = (delegate* unmanaged[Cdecl]<IntPtr, byte, void>)p[0],
            Destroy = (delegate* unmanaged[Cdecl]<IntPtr, void>)p[1],
            CaptureBegin = (delegate* unmanaged[Cdecl]<IntPtr, MempoolId, int, void>)p[2],
            CaptureEnd = (delegate* unmanaged[Cdecl]<IntPtr, void>)p[3],
            Replay = (delegate* unmanaged[Cdecl]<IntPtr, void>)p[4],
            StreamEndCapture = (delegate* unmanaged[Cdecl]<IntPtr, IntPtr*, int>)endCapture,
            GraphDestroy = (delegate* unmanaged[Cdecl]<IntPtr, int>)graphDestroy,
        };
    });

    /// <summary>Whether CUDA graphs can be captured with this libtorch (a CUDA build exporting CUDAGraph).</summary>
    public static bool Available => Bound.Value is not null;

    private readonly Api _api;
    private readonly Device _device;
    private IntPtr _object;
    private bool _captured;

    private CudaGraph(Api api, Device device)
    {
        _api = api;
        _device = device;
        _object = Marshal.AllocHGlobal(ObjectBytes);
        new Span<byte>((void*)_object, ObjectBytes).Clear();
        _api.Construct(_object, 0);   // keep_graph = false: capture_end instantiates and frees the cudaGraph_t
    }

    /// <summary>
    /// Captures <paramref name="work"/> on <paramref name="stream"/> (a side stream from
    /// <see cref="CudaStreams.SideStream"/>) into a new graph. Run the work once eagerly on the same stream first
    /// (warm-up: cuBLAS handles and workspaces, lazily loaded kernels). The device is synchronised first, so the
    /// capture sees everything queued before it.
    /// </summary>
    public static CudaGraph Capture(Device device, CudaStreams.StreamValue stream, Action work)
    {
        var api = Bound.Value ?? throw new MeteoraException("CUDA graphs: this libtorch does not export at::cuda::CUDAGraph");
        if (device.type != DeviceType.CUDA) throw new MeteoraException($"CUDA graphs need a CUDA device, not {device}");
        var graph = new CudaGraph(api, device);
        cuda.synchronize(device);
        int index = device.index < 0 ? 0 : device.index;
        using (CudaStreams.Use(stream, index))
        {
            api.CaptureBegin(graph._object, default, CaptureModeThreadLocal);
            try
            {
                work();
            }
            catch (Exception e)
            {
                // A failed op leaves the capture invalidated; libtorch's capture_end would throw a C++ exception
                // (which cannot cross into .NET), so end the stream capture directly and drop the half-made graph.
                IntPtr raw = IntPtr.Zero;
                api.StreamEndCapture(CudaStreams.HandleOf(stream), &raw);
                if (raw != IntPtr.Zero) api.GraphDestroy(raw);
                graph._object = IntPtr.Zero;   // leaked on purpose: its destructor would release a pool still marked as capturing
                throw new MeteoraException($"CUDA graph capture failed: {e.Message}");
            }
            api.CaptureEnd(graph._object);
        }
        graph._captured = true;
        return graph;
    }

    /// <summary>Launches the captured work on the current stream (the default stream unless changed).</summary>
    public void Replay()
    {
        if (!_captured || _object == IntPtr.Zero) throw new ObjectDisposedException(nameof(CudaGraph));
        _api.Replay(_object);
    }

    /// <summary>Frees the graph and returns its private memory pool to the caching allocator.</summary>
    public void Dispose()
    {
        if (_object == IntPtr.Zero) return;
        cuda.synchronize(_device);   // no replay may still be running on the pool being released
        _api.Destroy(_object);
        Marshal.FreeHGlobal(_object);
        _object = IntPtr.Zero;
    }
}
