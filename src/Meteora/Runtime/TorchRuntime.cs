using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Runtime;

/// <summary>Parses the <c>--device</c> and <c>--dtype</c> options and checks that the device exists.</summary>
public static class TorchRuntime
{
    private static readonly object BackendLock = new();
    private static string? _backendError;
    private static bool _backendChecked;

    /// <summary>
    /// Loads libtorch (TorchSharp's native backend) if it is not loaded yet, and turns a missing one into a one-line
    /// <see cref="MeteoraException"/> that names what is missing and the two ways to provide it (the TorchSharp-cpu
    /// package, or a libtorch folder on LD_LIBRARY_PATH). The packages reference TorchSharp without libtorch, so an
    /// application calls this first; the CLI calls it before any command that uses torch. Without it, the first use
    /// of <c>torch</c> fails with TorchSharp's own TypeInitializationException and a page of probing trace on stdout.
    /// The first call silences Console.Out for the moment libtorch loads (TorchSharp prints its probing trace there):
    /// call it at start-up, before other threads write to the console.
    /// </summary>
    public static void EnsureBackend()
    {
        lock (BackendLock)
        {
            if (!_backendChecked)
            {
                _backendChecked = true;
                // TorchSharp prints its probing trace to stdout when loading fails: keep it out of the user's output.
                var stdout = Console.Out;
                Console.SetOut(TextWriter.Null);
                try { _ = CPU; }
                catch (TypeInitializationException e) when (MissingBackendMessage(e) is { } missing) { _backendError = missing; }
                catch { _backendChecked = false; throw; }                  // not a missing backend: the caller sees it as it is
                finally { Console.SetOut(stdout); }
            }
            if (_backendError is not null) throw new MeteoraException(_backendError);
        }
    }

    /// <summary>
    /// The one-line message for TorchSharp's failure to load libtorch (<paramref name="e"/> is the type initializer's
    /// exception for <c>TorchSharp.torch</c>), or null when <paramref name="e"/> is something else.
    /// </summary>
    public static string? MissingBackendMessage(Exception e)
    {
        if (e is not TypeInitializationException { TypeName: "TorchSharp.torch" } t) return null;
        // TorchSharp's first line names the package it looked for, e.g. "… doesn't contain a reference to
        // libtorch-cpu-linux-x64, Version=2.10.0.0."
        string first = (t.InnerException?.Message ?? t.Message).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .FirstOrDefault() ?? "";
        return "no libtorch backend could be loaded" + (first.Length > 0 ? $" ({first.TrimEnd('.')})" : "") +
               ": reference the TorchSharp-cpu package for CPU, or put the lib folder of a libtorch 2.10+ (CPU or CUDA, e.g. a " +
               "PyTorch install's torch/lib) on LD_LIBRARY_PATH; see README \"Packages\"";
    }

    /// <summary>
    /// Resolves "cpu", "cuda" or "cuda:N". CUDA is initialised on first use; asking for it where libtorch has no
    /// CUDA support or no GPU is present is a one-line error.
    /// </summary>
    public static Device ParseDevice(string text)
    {
        EnsureBackend();
        string t = text.Trim().ToLowerInvariant();
        if (t == "cpu") return CPU;
        if (t == "cuda" || t.StartsWith("cuda:"))
        {
            int index = 0;
            if (t.Length > 4 && !int.TryParse(t[5..], out index))
                throw new MeteoraException($"--device: '{text}' is not a device (use cpu, cuda or cuda:N)");
            try { InitializeDeviceType(DeviceType.CUDA); }
            catch (Exception) { /* reported below as "no CUDA" */ }
            if (!cuda.is_available())
                throw new MeteoraException("--device cuda: no CUDA device is available (this libtorch build or machine has no GPU)");
            if (index >= cuda.device_count())
                throw new MeteoraException($"--device {text}: only {cuda.device_count()} CUDA device(s) present");
            return new Device(DeviceType.CUDA, index);
        }
        throw new MeteoraException($"--device: unknown device '{text}' (use cpu, cuda or cuda:N)");
    }

    /// <summary>Resolves "float32", "bfloat16" or "float16" (also fp32/bf16/fp16); null picks the device default.</summary>
    public static ScalarType ParseDType(string? text, Device device)
    {
        if (string.IsNullOrWhiteSpace(text))
            return device.type == DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32;
        return text.Trim().ToLowerInvariant() switch
        {
            "float32" or "fp32" or "f32" => ScalarType.Float32,
            "bfloat16" or "bf16" => ScalarType.BFloat16,
            "float16" or "fp16" or "f16" or "half" => ScalarType.Float16,
            _ => throw new MeteoraException($"--dtype: unknown dtype '{text}' (use float32, bfloat16 or float16)"),
        };
    }

    /// <summary>Name used in messages and JSON: float32, bfloat16, float16.</summary>
    public static string Name(ScalarType type) => type switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        _ => type.ToString().ToLowerInvariant(),
    };
}
