using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Runtime;

/// <summary>The machine a result was produced on, in words, for model cards and reports.</summary>
internal static class MachineDescription
{
    /// <summary>"NVIDIA H200 (cuda), 16 CPU cores, Linux …" or "Intel(R) Xeon(R) …, 2 cores, Linux …".</summary>
    public static string Describe(Device device)
    {
        string cpu = CpuModel() ?? "unknown CPU";
        string os = System.Runtime.InteropServices.RuntimeInformation.OSDescription;
        string cores = $"{Environment.ProcessorCount} CPU cores";
        if (device.type == DeviceType.CUDA)
            return $"{GpuName() ?? "CUDA GPU"} ({device}), {cores} ({cpu}), {os}";
        return $"{cpu}, {cores}, no GPU, {os}";
    }

    private static string? CpuModel()
    {
        try
        {
            return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim();
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    private static string? GpuName()
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo("nvidia-smi", "--query-gpu=name --format=csv,noheader")
            { RedirectStandardOutput = true, UseShellExecute = false });
            if (p is null) return null;
            var output = p.StandardOutput.ReadToEndAsync();
            if (!p.WaitForExit(5000)) { p.Kill(); return null; }
            string first = output.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault()?.Trim() ?? "";
            return first.Length > 0 ? first : null;
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException) { return null; }
    }
}
