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

    /// <summary>The --device, resolved (and CUDA initialised) on first use.</summary>
    public Device Device => _device ??= TorchRuntime.ParseDevice(Parse.GetValue(GlobalOptions.Device) ?? "cpu");

    /// <summary>The --dtype, defaulting to float32 on CPU and bfloat16 on CUDA.</summary>
    public ScalarType DType => TorchRuntime.ParseDType(Parse.GetValue(GlobalOptions.DType), Device);
}
