using System.Runtime.InteropServices;

namespace Meteora.Runtime;

/// <summary>
/// One kernel of ours, compiled with <see cref="Nvrtc"/> for the device's compute capability, loaded through the
/// CUDA driver API into the primary context that libtorch uses, and launched on libtorch's current stream, so it
/// runs in order with ATen's kernels and is captured into CUDA graphs like them.
/// </summary>
internal sealed unsafe class CudaKernel
{
    private const int AttrComputeMajor = 75, AttrComputeMinor = 76;   // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_*

    private sealed class Api
    {
        public delegate* unmanaged[Cdecl]<uint, int> Init;
        public delegate* unmanaged[Cdecl]<IntPtr*, int> CtxGetCurrent;
        public delegate* unmanaged[Cdecl]<IntPtr, int> CtxSetCurrent;
        public delegate* unmanaged[Cdecl]<IntPtr*, int, int> PrimaryCtxRetain;
        public delegate* unmanaged[Cdecl]<int*, int, int, int> DeviceGetAttribute;
        public delegate* unmanaged[Cdecl]<IntPtr*, void*, int> ModuleLoadData;
        public delegate* unmanaged[Cdecl]<IntPtr*, IntPtr, byte*, int> ModuleGetFunction;
        public delegate* unmanaged[Cdecl]<IntPtr, uint, uint, uint, uint, uint, uint, uint, IntPtr, void**, void**, int> LaunchKernel;
    }

    private static readonly Lazy<Api?> Bound = new(() =>
    {
        if (NativeExports.Bind(NativeExports.CudaDriver, "cuInit", "cuCtxGetCurrent", "cuCtxSetCurrent", "cuDevicePrimaryCtxRetain",
                "cuDeviceGetAttribute", "cuModuleLoadData", "cuModuleGetFunction", "cuLaunchKernel") is not { Addresses: var p })
            return null;
        return new Api
        {
            Init = (delegate* unmanaged[Cdecl]<uint, int>)p[0],
            CtxGetCurrent = (delegate* unmanaged[Cdecl]<IntPtr*, int>)p[1],
            CtxSetCurrent = (delegate* unmanaged[Cdecl]<IntPtr, int>)p[2],
            PrimaryCtxRetain = (delegate* unmanaged[Cdecl]<IntPtr*, int, int>)p[3],
            DeviceGetAttribute = (delegate* unmanaged[Cdecl]<int*, int, int, int>)p[4],
            ModuleLoadData = (delegate* unmanaged[Cdecl]<IntPtr*, void*, int>)p[5],
            ModuleGetFunction = (delegate* unmanaged[Cdecl]<IntPtr*, IntPtr, byte*, int>)p[6],
            LaunchKernel = (delegate* unmanaged[Cdecl]<IntPtr, uint, uint, uint, uint, uint, uint, uint, IntPtr, void**, void**, int>)p[7],
        };
    });

    private static readonly Dictionary<(string Source, int Major, int Minor), byte[]> Compiled = [];

    private readonly Api _api;
    private readonly IntPtr _function;
    private readonly int _device;
    private readonly IntPtr _context;   // the device's primary context, which holds the module

    /// <summary>The kernel's entry point name.</summary>
    public string Name { get; }

    /// <summary>The compute capability it was compiled for, e.g. "sm_90".</summary>
    public string Architecture { get; }

    private CudaKernel(Api api, IntPtr function, int device, IntPtr context, string name, string arch)
    {
        _api = api; _function = function; _device = device; _context = context; Name = name; Architecture = arch;
    }

    /// <summary>
    /// Compiles <paramref name="source"/> and loads its <c>extern "C"</c> entry point <paramref name="name"/> on
    /// CUDA device <paramref name="device"/>. Call after libtorch has initialised CUDA (any tensor on the device).
    /// Throws a <see cref="MeteoraException"/> naming the cause when the driver or NVRTC is missing or the
    /// source does not compile.
    /// </summary>
    public static CudaKernel Load(string source, string name, int device)
    {
        var api = Bound.Value ?? throw new MeteoraException("CUDA driver (libcuda) not found");
        if (!CudaStreams.Available) throw new MeteoraException("libtorch's CUDA stream functions not found (needed to launch in order with ATen)");
        Check(api.Init(0), "cuInit");
        // libtorch works in each device's primary context. Load into the target device's, whichever context is
        // current on this thread (another device's, after work there); restore another device's context afterwards,
        // and leave this one current where none was (libtorch would make it current anyway).
        IntPtr ctx, previous;
        Check(api.PrimaryCtxRetain(&ctx, device), "cuDevicePrimaryCtxRetain");
        Check(api.CtxGetCurrent(&previous), "cuCtxGetCurrent");
        Check(api.CtxSetCurrent(ctx), "cuCtxSetCurrent");
        try { return LoadInto(api, source, name, device, ctx); }
        finally { if (previous != IntPtr.Zero && previous != ctx) api.CtxSetCurrent(previous); }
    }

    private static CudaKernel LoadInto(Api api, string source, string name, int device, IntPtr ctx)
    {
        int major, minor;
        Check(api.DeviceGetAttribute(&major, AttrComputeMajor, device), "cuDeviceGetAttribute");
        Check(api.DeviceGetAttribute(&minor, AttrComputeMinor, device), "cuDeviceGetAttribute");
        byte[] cubin;
        lock (Compiled)   // one compilation per source and architecture, however many entry points are loaded from it
        {
            if (!Compiled.TryGetValue((source, major, minor), out cubin!))
                Compiled[(source, major, minor)] = cubin = Nvrtc.CompileToCubin(source, name + ".cu", major, minor);
        }
        IntPtr module, function;
        fixed (byte* image = cubin) Check(api.ModuleLoadData(&module, image), "cuModuleLoadData");
        var nameBytes = System.Text.Encoding.ASCII.GetBytes(name + "\0");
        fixed (byte* n = nameBytes) Check(api.ModuleGetFunction(&function, module, n), $"cuModuleGetFunction({name})");
        return new CudaKernel(api, function, device, ctx, name, $"sm_{major}{minor}");
    }

    /// <summary>
    /// Launches on libtorch's current stream. <paramref name="args"/> points at each argument's value, in the
    /// kernel's parameter order.
    /// </summary>
    public void Launch(uint gridX, uint blockX, void** args)
    {
        var stream = CudaStreams.CurrentHandle(_device);
        // The function belongs to its device's primary context: launch from it (ATen's last op may have left another
        // device's current on this thread), then restore the thread's context.
        IntPtr current;
        Check(_api.CtxGetCurrent(&current), "cuCtxGetCurrent");
        if (current != _context) Check(_api.CtxSetCurrent(_context), "cuCtxSetCurrent");
        int status = _api.LaunchKernel(_function, gridX, 1, 1, blockX, 1, 1, 0, stream, args, null);
        if (current != _context && current != IntPtr.Zero) _api.CtxSetCurrent(current);
        if (status != 0) throw new MeteoraException($"CUDA: launching {Name} failed with driver status {status}");
    }

    private static void Check(int status, string what)
    {
        if (status != 0) throw new MeteoraException($"CUDA driver: {what} failed with status {status}");
    }
}
