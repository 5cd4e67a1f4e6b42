using System.Runtime.InteropServices;
using System.Text;

namespace Meteora.Runtime;

/// <summary>
/// CUDA C++ compiled at run time with NVRTC (the runtime compiler that ships with the CUDA toolkit and with
/// PyTorch's CUDA builds), so our few custom kernels need no build step and no compiler on the user's machine.
/// Bound from <c>libnvrtc</c> by its C API.
/// </summary>
internal static unsafe class Nvrtc
{
    private sealed class Api
    {
        public delegate* unmanaged[Cdecl]<IntPtr*, byte*, byte*, int, byte**, byte**, int> CreateProgram;
        public delegate* unmanaged[Cdecl]<IntPtr, int, byte**, int> CompileProgram;
        public delegate* unmanaged[Cdecl]<IntPtr, nuint*, int> GetLogSize;
        public delegate* unmanaged[Cdecl]<IntPtr, byte*, int> GetLog;
        public delegate* unmanaged[Cdecl]<IntPtr, nuint*, int> GetCubinSize;
        public delegate* unmanaged[Cdecl]<IntPtr, byte*, int> GetCubin;
        public delegate* unmanaged[Cdecl]<IntPtr*, int> DestroyProgram;
    }

    private static readonly Lazy<(Api? Api, string Where)> Bound = new(() =>
    {
        // Paths that exist (or bare names for the loader to resolve), each with its builtins preloaded just before it is tried.
        var candidates = Candidates().Where(path => !Path.IsPathRooted(path) || File.Exists(path)).Select(path => { PreloadBuiltins(path); return path; });
        if (NativeExports.Bind(candidates, "nvrtcCreateProgram", "nvrtcCompileProgram", "nvrtcGetProgramLogSize", "nvrtcGetProgramLog",
                "nvrtcGetCUBINSize", "nvrtcGetCUBIN", "nvrtcDestroyProgram") is not { } bound)
            return (null, "");
        var p = bound.Addresses;
        return (new Api
        {
            CreateProgram = (delegate* unmanaged[Cdecl]<IntPtr*, byte*, byte*, int, byte**, byte**, int>)p[0],
            CompileProgram = (delegate* unmanaged[Cdecl]<IntPtr, int, byte**, int>)p[1],
            GetLogSize = (delegate* unmanaged[Cdecl]<IntPtr, nuint*, int>)p[2],
            GetLog = (delegate* unmanaged[Cdecl]<IntPtr, byte*, int>)p[3],
            GetCubinSize = (delegate* unmanaged[Cdecl]<IntPtr, nuint*, int>)p[4],
            GetCubin = (delegate* unmanaged[Cdecl]<IntPtr, byte*, int>)p[5],
            DestroyProgram = (delegate* unmanaged[Cdecl]<IntPtr*, int>)p[6],
        }, bound.Library);
    });

    /// <summary><c>METEORA_NVRTC</c> (a library path) first, then library names (the loader's path), then the usual toolkit folders.</summary>
    private static IEnumerable<string> Candidates()
    {
        if (Environment.GetEnvironmentVariable("METEORA_NVRTC") is { Length: > 0 } explicitPath) yield return explicitPath;
        string[] names = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"];
        foreach (var n in names) yield return n;
        var roots = new[] { Environment.GetEnvironmentVariable("CUDA_HOME"), Environment.GetEnvironmentVariable("CUDA_PATH"), "/usr/local/cuda" };
        foreach (var root in roots.Where(r => !string.IsNullOrEmpty(r)))
        foreach (var sub in new[] { "lib64", "lib", "targets/x86_64-linux/lib" })
        foreach (var n in names)
            yield return Path.Combine(root!, sub, n);
    }

    /// <summary>
    /// libnvrtc opens libnvrtc-builtins by name when it compiles; loaded from a folder that is not on the loader
    /// path, it would not find the copy beside it. Loading that copy first makes the name resolve to it.
    /// </summary>
    private static void PreloadBuiltins(string nvrtcPath)
    {
        if (!Path.IsPathRooted(nvrtcPath) || Path.GetDirectoryName(nvrtcPath) is not { } dir || !Directory.Exists(dir)) return;
        foreach (var builtins in Directory.EnumerateFiles(dir, "libnvrtc-builtins.so*").OrderBy(f => f.Length))
            NativeLibrary.TryLoad(builtins, out _);
    }

    /// <summary>Whether libnvrtc was found.</summary>
    public static bool Available => Bound.Value.Api is not null;

    /// <summary>Where libnvrtc was loaded from (for messages).</summary>
    public static string Location => Bound.Value.Where;

    /// <summary>
    /// Compiles <paramref name="source"/> for compute capability <paramref name="major"/>.<paramref name="minor"/>
    /// and returns the CUBIN. A compile error throws with NVRTC's log.
    /// </summary>
    public static byte[] CompileToCubin(string source, string name, int major, int minor)
    {
        var api = Bound.Value.Api ?? throw new MeteoraException("NVRTC: libnvrtc not found (set CUDA_HOME to the CUDA toolkit)");
        var src = Encoding.UTF8.GetBytes(source + "\0");
        var nm = Encoding.UTF8.GetBytes(name + "\0");
        string[] options = [$"--gpu-architecture=sm_{major}{minor}"];
        var optionBytes = options.Select(o => Encoding.UTF8.GetBytes(o + "\0")).ToArray();
        IntPtr program;
        fixed (byte* s = src, n = nm)
            Check(api.CreateProgram(&program, s, n, 0, null, null), "nvrtcCreateProgram");
        try
        {
            var handles = optionBytes.Select(b => GCHandle.Alloc(b, GCHandleType.Pinned)).ToArray();
            int status;
            try
            {
                var ptrs = stackalloc byte*[options.Length];
                for (int i = 0; i < options.Length; i++) ptrs[i] = (byte*)handles[i].AddrOfPinnedObject();
                status = api.CompileProgram(program, options.Length, ptrs);
            }
            finally
            {
                foreach (var h in handles) h.Free();
            }
            if (status != 0) throw new MeteoraException($"NVRTC: compiling {name} failed: {Log(api, program)}");
            nuint size;
            Check(api.GetCubinSize(program, &size), "nvrtcGetCUBINSize");
            var cubin = new byte[(int)size];
            fixed (byte* c = cubin) Check(api.GetCubin(program, c), "nvrtcGetCUBIN");
            return cubin;
        }
        finally
        {
            api.DestroyProgram(&program);
        }
    }

    private static string Log(Api api, IntPtr program)
    {
        nuint size;
        if (api.GetLogSize(program, &size) != 0 || size <= 1) return "(no log)";
        var log = new byte[(int)size];
        fixed (byte* l = log) api.GetLog(program, l);
        return Encoding.UTF8.GetString(log, 0, log.Length - 1).Trim().ReplaceLineEndings(" | ");
    }

    private static void Check(int status, string what)
    {
        if (status != 0) throw new MeteoraException($"NVRTC: {what} failed with status {status}");
    }
}
