using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Runtime;

/// <summary>Parses the <c>--device</c> and <c>--dtype</c> options and checks that the device exists.</summary>
public static class TorchRuntime
{
    /// <summary>
    /// Resolves "cpu", "cuda" or "cuda:N". CUDA is initialised on first use; asking for it where libtorch has no
    /// CUDA support or no GPU is present is a one-line error.
    /// </summary>
    public static Device ParseDevice(string text)
    {
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
