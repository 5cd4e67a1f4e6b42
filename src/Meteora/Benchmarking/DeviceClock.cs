using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Benchmarking;

/// <summary>
/// Wall-clock timing of device work: synchronises the device before starting and before reading the clock, so
/// the time covers all queued kernels. Results are reported as the median of repeated runs.
/// </summary>
internal static class DeviceClock
{
    public static void Synchronize(Device device)
    {
        if (device.type == DeviceType.CUDA) cuda.synchronize(device);
    }

    /// <summary>Seconds taken by <paramref name="work"/>, device work included.</summary>
    public static double Time(Device device, Action work)
    {
        Synchronize(device);
        var sw = Stopwatch.StartNew();
        work();
        Synchronize(device);
        return sw.Elapsed.TotalSeconds;
    }

    /// <summary>Runs <paramref name="warmup"/> untimed then <paramref name="runs"/> timed repetitions; returns the median seconds.</summary>
    public static double Median(Device device, int warmup, int runs, Action work)
    {
        for (int i = 0; i < warmup; i++) Time(device, work);
        return MedianOf(Enumerable.Range(0, runs).Select(_ => Time(device, work)));
    }

    public static double MedianOf(IEnumerable<double> values)
    {
        var v = values.OrderBy(t => t).ToArray();
        if (v.Length == 0) throw new ArgumentException("no values");
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }
}
