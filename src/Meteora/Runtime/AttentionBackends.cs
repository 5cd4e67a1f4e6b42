using System.Runtime.InteropServices;

namespace Meteora.Runtime;

/// <summary>
/// Keeps <c>scaled_dot_product_attention</c> off cuDNN's attention backend on CUDA. libtorch (2.5 and later)
/// prefers cuDNN attention on Hopper GPUs, and cuDNN builds an execution plan for every new (query, key)
/// length: 40–70 ms each on an H100/H200 (measured with <c>bench/reference/sdpa_shapes.py</c>). Decoding makes
/// a new key length at every step, so the plan build ran once per generated token and cut batch-1 decode of a
/// LLaMA-3-8B-shaped model from ~62 to ~18 tokens/s. Flash and memory-efficient attention have no per-shape
/// cost and are what PyTorch then picks. TorchSharp exposes switches for flash and math only, so this calls
/// <c>at::globalContext().setSDPUseCuDNN(false)</c> in libtorch directly (Itanium C++ ABI: the context
/// reference is the first argument).
/// </summary>
internal static class AttentionBackends
{
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] private delegate IntPtr GlobalContextFn();
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] private delegate void SetBoolFn(IntPtr context, [MarshalAs(UnmanagedType.I1)] bool value);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] [return: MarshalAs(UnmanagedType.I1)] private delegate bool GetBoolFn(IntPtr context);

    private static readonly object Gate = new();
    private static bool? _cuDnnDisabled;

    /// <summary>
    /// Switches cuDNN attention off (once per process). True when it is off afterwards, false when this libtorch
    /// does not export the switch (then SDPA keeps libtorch's own choice).
    /// </summary>
    public static bool DisableCuDnnAttention()
    {
        lock (Gate)
        {
            if (_cuDnnDisabled is { } done) return done;
            _cuDnnDisabled = TrySetCuDnn(false);
            return _cuDnnDisabled.Value;
        }
    }

    private static bool TrySetCuDnn(bool enabled)
    {
        if (NativeExports.Bind(NativeExports.TorchCpu,
                "_ZN2at13globalContextEv", "_ZN2at7Context14setSDPUseCuDNNEb", "_ZNK2at7Context19userEnabledCuDNNSDPEv") is not { } bound)
            return false;
        var context = Marshal.GetDelegateForFunctionPointer<GlobalContextFn>(bound.Addresses[0])();
        Marshal.GetDelegateForFunctionPointer<SetBoolFn>(bound.Addresses[1])(context, enabled);
        return Marshal.GetDelegateForFunctionPointer<GetBoolFn>(bound.Addresses[2])(context) == enabled;
    }
}
