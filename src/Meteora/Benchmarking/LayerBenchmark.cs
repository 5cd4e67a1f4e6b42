using Meteora.Llama;
using Meteora.Moe;
using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Benchmarking;

/// <summary>One measured (shape, L, r, k, N, variant): median time, transient device memory, error vs loop.</summary>
public sealed record LayerBenchRow(int In, int Out, int Adapters, int Rank, int TopK, int Tokens, string Variant,
    double Milliseconds, long? ExtraBytes, double? RelErrorVsLoop);

/// <summary>
/// Times one MeteoRA projection with every mixing strategy and the bare base projection. Timing: CUDA events on
/// the default stream (a synchronised stopwatch on the CPU), warm-up then the median of the runs. Memory: the
/// peak the call allocates beyond what was live before it, from the CUDA memory pool (needs
/// <c>PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync</c>; null otherwise). Each strategy's output is compared
/// with <c>loop</c>'s: max |difference| / max |loop|.
/// </summary>
public static class LayerBenchmark
{
    /// <summary>
    /// base = the bare projection; dense = the default dense path (at up to <see cref="SelectiveMixKernel.MaxTokens"/>
    /// tokens on CUDA the selective mix kernels); dense-gemm = dense on the fused [W; A; G] GEMM with the routing kernel
    /// (the selective kernels off: where the two meet is the split point); dense-aten = that GEMM with the routing done
    /// by ATen ops instead of <see cref="RoutingKernel"/> (the same as dense where the kernels do not apply, e.g. on CPU); rows = dense
    /// with per-row routing (<see cref="RowRouting"/>, as the server runs it: every token its own row, routed by the
    /// gates with the same k and T, usage recorded) by ATen ops; rows-kernel = the same with the per-row routing
    /// kernel (as rows where it does not apply). Both must equal loop, since every row asks for the same routing.
    /// </summary>
    public static readonly string[] Variants = ["base", "loop", "gather", "segment", "dense", "dense-gemm", "dense-aten", "auto", "rows", "rows-kernel"];

    public static IEnumerable<LayerBenchRow> Run(IReadOnlyList<(int In, int Out)> shapes, IReadOnlyList<int> adapterCounts,
        IReadOnlyList<int> ranks, IReadOnlyList<int> topKs, IReadOnlyList<int> tokenCounts, Device device, ScalarType dtype,
        int warmup, int runs, Action<string>? log = null)
    {
        using var noGrad = no_grad();
        foreach (var (inF, outF) in shapes)
        foreach (int L in adapterCounts)
        foreach (int r in ranks)
        {
            var routing = new RoutingOptions();
            using var layer = Build(inF, outF, L, r, routing, device, dtype);
            log?.Invoke($"  {inF}→{outF}, L={L}, r={r}: stacked rank {L * r}");
            foreach (int k in topKs.Where(k => k <= L))
            foreach (int n in tokenCounts)
            {
                routing.TopK = k;
                using var scope = NewDisposeScope();
                var x = randn(n, inF, dtype, device);
                using var perRow = new RowRouting(n, L, layers: 1, groups: 1, device);
                for (int row = 0; row < n; row++) perRow.SetGates(row, k, 1.0);
                perRow.Upload();
                Tensor? reference = null;
                var rows = new List<LayerBenchRow>();
                foreach (var variant in Variants.OrderBy(v => v != "loop"))   // loop first: the others are compared with it
                {
                    Func<Tensor> call = variant switch
                    {
                        "base" => () => nn.functional.linear(x, layer.weight),
                        "dense-aten" => () => WithoutKernel(() => { routing.Strategy = MixingStrategy.Dense; return layer.forward(x); }, routingKernel: false),
                        "dense-gemm" => () => WithoutKernel(() => { routing.Strategy = MixingStrategy.Dense; return layer.forward(x); }, routingKernel: true),
                        "rows" or "rows-kernel" => () => WithRows(layer, routing, perRow, x, kernel: variant == "rows-kernel"),
                        _ => () => { routing.Strategy = MixingStrategies.Parse(variant); return layer.forward(x); },
                    };
                    var output = call();
                    double? err = null;
                    if (variant == "loop") reference = output;
                    else if (variant != "base")
                        err = (output - reference!).abs().max().to(ScalarType.Float32).item<float>() / Math.Max(reference!.abs().max().to(ScalarType.Float32).item<float>(), 1e-30);
                    long? extra = MeasureExtra(device, call);
                    double ms = Time(device, warmup, runs, call);
                    rows.Add(new LayerBenchRow(inF, outF, L, r, k, n, variant, ms, extra, err));
                }
                foreach (var row in rows.OrderBy(v => Array.IndexOf(Variants, v.Variant))) yield return row;
            }
        }
    }

    /// <summary>A MeteoRA projection with random base, adapters (A ~ N(0, 1/in), B ~ N(0, 0.02²), scale 2) and gate.</summary>
    public static MeteoraLinear Build(int inF, int outF, int adapters, int rank, RoutingOptions routing, Device device, ScalarType dtype)
    {
        var site = new ProjectionSite(0, "mlp", "up_proj", inF, outF);
        using var gen = new Generator(7);
        var perAdapter = Enumerable.Range(0, adapters).Select(_ => ((Tensor, Tensor, double)?)(
            empty(rank, inF).normal_(0, 1 / Math.Sqrt(inF), gen), empty(outF, rank).normal_(0, 0.02, gen), 2.0)).ToList();
        var layer = MeteoraLinear.Create(site, perAdapter, routing, dtype, dtype, device);
        foreach (var p in perAdapter) { p!.Value.Item1.Dispose(); p.Value.Item2.Dispose(); }
        using (no_grad())
        {
            using var w = empty(outF, inF).normal_(0, 1 / Math.Sqrt(inF), gen);
            using var g = empty(adapters, inF).normal_(0, 1 / Math.Sqrt(inF), gen);
            layer.weight.copy_(w);
            layer.moe_gate.copy_(g);
        }
        layer.SyncFusedGate();
        return layer;
    }

    private static Tensor WithoutKernel(Func<Tensor> call, bool routingKernel)
    {
        bool was = RoutingKernel.Enabled, selective = SelectiveMixKernel.Enabled;
        RoutingKernel.Enabled = routingKernel;
        SelectiveMixKernel.Enabled = false;
        try { return call(); }
        finally { RoutingKernel.Enabled = was; SelectiveMixKernel.Enabled = selective; }
    }

    /// <summary>x (N, in) as N rows of one token each, routed per row; returns (N, out).</summary>
    private static Tensor WithRows(MeteoraLinear layer, RoutingOptions routing, RowRouting rows, Tensor x, bool kernel)
    {
        bool was = RoutingKernel.RowsEnabled;
        RoutingKernel.RowsEnabled = kernel;
        routing.Strategy = MixingStrategy.Dense;
        routing.Rows = rows;
        try
        {
            rows.ClearUsage();
            using var y = layer.forward(x.view(x.shape[0], 1, x.shape[1]));             // (N, 1, out)
            return y.view(x.shape[0], -1).clone();                                         // (N, out)
        }
        finally
        {
            routing.Rows = null;
            RoutingKernel.RowsEnabled = was;
        }
    }

    private static double Time(Device device, int warmup, int runs, Func<Tensor> call)
    {
        for (int i = 0; i < warmup; i++) { using var _ = call(); }
        var times = new List<double>();
        for (int i = 0; i < runs; i++)
        {
            if (device.type == DeviceType.CUDA && CudaRuntime.HasEvents)
                times.Add(CudaRuntime.TimeMs(() => { using var _ = call(); }));
            else
                times.Add(DeviceClock.Time(device, () => { using var _ = call(); }) * 1e3);
        }
        return DeviceClock.MedianOf(times);
    }

    private static long? MeasureExtra(Device device, Func<Tensor> call)
    {
        if (device.type != DeviceType.CUDA) return null;
        DeviceClock.Synchronize(device);
        long? before = CudaRuntime.PoolUsedBytes();
        if (before is null) return null;
        CudaRuntime.ResetPoolPeak();
        using (var _ = call()) DeviceClock.Synchronize(device);
        return CudaRuntime.PoolPeakBytes() - before;
    }
}
