using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Meteora.Distributed;
using Meteora.IO;
using Spectre.Console;
using static TorchSharp.torch;

namespace Meteora.Cli.Commands;

/// <summary>
/// <c>bench all-reduce</c>: the NCCL binding's check and bandwidth, like nccl-tests' all_reduce_perf. Every rank
/// fills a float32 buffer with rank + 1 and sums it; the result must be W(W+1)/2 in every element, and a broadcast
/// from the last rank must arrive everywhere. Runs under torchrun with any number of ranks, or alone as a group of
/// one (which still goes through NCCL: a smoke test of the binding on a single GPU).
/// </summary>
public static class BenchAllReduceCommand
{
    public static Command Create(Func<ParseResult, CliContext> context)
    {
        var sizes = new Option<string>("--sizes-mib") { Description = "buffer sizes in MiB", DefaultValueFactory = _ => "1,16,64,256" };
        var iterations = new Option<int>("--iterations") { Description = "timed all-reduces per size (after 3 untimed)", DefaultValueFactory = _ => 20 };
        var json = new Option<string?>("--json") { Description = "also write the result to this JSON file (rank 0)" };
        var cmd = new Command("all-reduce", "Check NCCL all-reduce and broadcast across the ranks (torchrun) and time all-reduce") { sizes, iterations, json };
        cmd.SetAction(p =>
        {
            var ctx = context(p);
            var device = ctx.Device;
            if (device.type != TorchSharp.DeviceType.CUDA) throw new MeteoraException("bench all-reduce: NCCL runs on GPUs; add --device cuda");
            int iters = p.GetValue(iterations);
            if (iters is < 1 or > 10_000) throw new MeteoraException($"--iterations: {iters} is out of range (1…10000)");
            var mib = p.GetValue(sizes)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(v => double.TryParse(v, System.Globalization.CultureInfo.InvariantCulture, out double d) && d > 0 && d <= 16_384 ? d : throw new MeteoraException($"--sizes-mib: '{v}' is not a size in (0, 16384]")).ToArray();
            var launch = LaunchEnvironment.Read() ?? new LaunchEnvironment(0, 0, 1, null, null, $"single-{Environment.ProcessId}");
            string folder = Path.Combine(Path.GetTempPath(), "meteora-bench-rendezvous");
            using var comm = NcclCommunicator.Join(launch, device, folder, ctx.Err.WriteLine);
            int W = comm.WorldSize;
            float expected = W * (W + 1) / 2f;

            using (var b = full(7, (float)comm.Rank, device: device))
            {
                comm.Broadcast(b, root: W - 1);
                if (b.cpu().data<float>().Any(v => v != W - 1)) throw new MeteoraException($"rank {comm.Rank}: broadcast from rank {W - 1} delivered other values");
            }
            var rows = new List<(double MiB, double Ms, double AlgGBs, double BusGBs)>();
            foreach (double size in mib)
            {
                long n = (long)(size * (1 << 20) / 4);
                using var buffer = empty(n, ScalarType.Float32, device);
                for (int i = 0; i < 3; i++) { buffer.fill_(comm.Rank + 1); comm.AllReduceSum(buffer); }
                using (var wrong = buffer.ne(expected).sum())
                    if (wrong.cpu().item<long>() is var bad && bad > 0) throw new MeteoraException($"rank {comm.Rank}: all-reduce of {size} MiB: {bad} elements differ from {expected}");
                comm.Barrier();
                var clock = Stopwatch.StartNew();
                for (int i = 0; i < iters; i++) comm.AllReduceSum(buffer);
                cuda.synchronize(device);
                double s = clock.Elapsed.TotalSeconds / iters;
                double alg = n * 4 / s / 1e9;
                rows.Add((size, s * 1e3, alg, alg * (W > 1 ? 2.0 * (W - 1) / W : 1)));
            }
            if (comm.Rank > 0) return 0;
            ctx.Err.WriteLine($"{comm.Version}: {W} rank(s); every all-reduce summed to {expected}, the broadcast arrived");
            var table = new Table().AddColumns("size (MiB)", "time (ms)", "algbw (GB/s)", "busbw (GB/s)");
            foreach (var r in rows) table.AddRow($"{r.MiB:G}", $"{r.Ms:F3}", $"{r.AlgGBs:F1}", $"{r.BusGBs:F1}");
            BenchCommand.Render(ctx.Out, table);
            if (p.GetValue(json) is { } path)
                AtomicFile.WriteAllText(path, JsonSerializer.Serialize(new
                {
                    nccl = comm.Version, world = W, device = device.ToString(),
                    sizes = rows.Select(r => new { mib = r.MiB, ms = r.Ms, algbw_gb_s = r.AlgGBs, busbw_gb_s = r.BusGBs }),
                }, new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        });
        return cmd;
    }
}
