using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Meteora.Runtime;

/// <summary>The address of a tensor's first element, for our own kernels and NCCL (TorchSharp exposes none for CUDA tensors).</summary>
internal static class DeviceMemory
{
    /// <summary>Storage base + storage offset × element size: where element 0 of <paramref name="t"/> lives (host or device).</summary>
    public static IntPtr Address(Tensor t) => StorageData(t.Handle) + (nint)(t.storage_offset() * t.ElementSize);

    // The storage's base address (TorchSharp's own export).
    [DllImport("LibTorchSharp", EntryPoint = "THSStorage_data_ptr")]
    private static extern IntPtr StorageData(IntPtr tensor);
}
