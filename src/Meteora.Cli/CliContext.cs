using System.CommandLine;
using Meteora.Runtime;
using static TorchSharp.torch;

namespace Meteora.Cli;

/// <summary>What every command gets: output streams and the parsed global --device / --dtype.</summary>
public sealed class CliContext
{
    public required TextWriter Out { get; init; }
    public required TextWriter Err { get; init; }
    public required ParseResult Parse { get; init; }

    private Device? _device;

    /// <summary>
    /// The --device, resolved (and CUDA initialised) on first use. On the CPU this also applies
    /// <see cref="NativeHeap.KeepFreedMemory"/> (1.7× faster training on 2 cores) unless METEORA_NATIVE_HEAP=default;
    /// not on CUDA, where it slowed host-bound decoding (H200, batch 1: 31–33 vs 40–53 tokens/s).
    /// </summary>
    public Device Device => _device ??= Resolve();

    private Device Resolve()
    {
        string text = Parse.GetValue(GlobalOptions.Device) ?? "cpu";
        var device = TorchRuntime.ParseDevice(text);
        // One of several ranks under torchrun: this rank's own GPU (cuda:LOCAL_RANK).
        if (DistributedLaunch.Ranks() is { } launch) device = DistributedLaunch.RankDevice(device, launch, text);
        if (device.type == TorchSharp.DeviceType.CPU && Environment.GetEnvironmentVariable("METEORA_NATIVE_HEAP") != "default")
            NativeHeap.KeepFreedMemory();
        return device;
    }

    /// <summary>The --dtype, defaulting to float32 on CPU and bfloat16 on CUDA.</summary>
    public ScalarType DType => TorchRuntime.ParseDType(Parse.GetValue(GlobalOptions.DType), Device);
}
