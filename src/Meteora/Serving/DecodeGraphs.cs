using Meteora.Llama;
using Meteora.Moe;
using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Serving;

/// <summary>
/// The engine's decode steps replayed from CUDA graphs (gpt-fast style): one graph per (batch bucket, key-length
/// bucket, routing path). A step's token ids, positions and per-row routing settings live in device tensors of
/// fixed address that are written before each replay, so a graph captured for one set of requests serves any other
/// set of the same shape. A decode step of a LLaMA-3-8B-shaped MeteoRA model issues thousands of small kernels; eagerly
/// the host cannot issue them as fast as the GPU runs them (docs/BENCHMARKS.md, "Serving"), replayed it issues one.
/// The first step of each shape runs eagerly on the capture stream (warm-up), the second is captured, all later ones
/// replay.
/// </summary>
internal sealed class DecodeGraphs : IDisposable
{
    private sealed class Entry : IDisposable
    {
        public required Tensor Ids { get; init; }            // (B, 1) int64
        public required Tensor Positions { get; init; }      // (B, 1) int64
        public required KvCache View { get; init; }          // rows [0, B) of the engine's cache
        public required RowRouting? Routing { get; init; }
        public required int KeyLength { get; init; }
        public CudaGraph? Graph { get; set; }
        public Tensor? Logits { get; set; }                  // (B, V): the graph's output once captured
        public int Runs { get; set; }
        /// <summary>Capture failed: this shape runs eagerly from now on.</summary>
        public bool Eager { get; set; }

        public void Dispose()
        {
            Graph?.Dispose();
            Logits?.Dispose();
            Ids.Dispose(); Positions.Dispose(); View.Dispose(); Routing?.Dispose();
        }
    }

    private readonly LlamaForCausalLM _lm;
    private readonly MeteoraModel? _meteora;
    private readonly KvCache _cache;
    private readonly int _maxKeys;
    private readonly int _groups;
    private readonly Dictionary<(int Batch, int Keys, bool Kernel), Entry> _entries = new();
    private readonly CudaStreams.StreamValue _stream;

    /// <summary>Whether graphs can run here: a CUDA model and a libtorch that exports CUDA graphs and streams.</summary>
    public static bool Available(LlamaForCausalLM lm) => lm.Device.type == DeviceType.CUDA && CudaGraph.Available && CudaStreams.Available;

    public DecodeGraphs(LlamaForCausalLM lm, MeteoraModel? meteora, KvCache cache, int maxKeys, int groups)
    {
        _lm = lm; _meteora = meteora; _cache = cache; _maxKeys = maxKeys; _groups = groups;
        _stream = CudaStreams.SideStream(DeviceIndex);
    }

    private int DeviceIndex => _lm.Device.index < 0 ? 0 : _lm.Device.index;

    /// <summary>Key slots a graph reads: <paramref name="needed"/> rounded up to a multiple of 512, at most the cache's.</summary>
    public int KeyBucket(int needed) => Math.Min(_maxKeys, (needed + 511) / 512 * 512);

    /// <summary>
    /// One decode step over rows [0, <paramref name="batch"/>) reading <paramref name="keys"/> key slots: writes the
    /// ids and positions (B) and the rows' routing (<paramref name="configure"/>) into the graph's tensors and replays
    /// it (after the warm-up and capture steps). <paramref name="maxTopK"/>, the largest top-k of a gate-routed row,
    /// picks the graph: the routing kernel takes at most 8, and which path a graph uses is fixed when it is captured.
    /// Returns logits (B, V), owned by the graph and overwritten by its next replay, and the routing whose usage the
    /// step filled.
    /// </summary>
    public (Tensor Logits, RowRouting? Routing) Step(int batch, int keys, long[] ids, long[] positions, Action<RowRouting> configure, int maxTopK)
    {
        var e = Get(batch, keys, RoutingKernel.RowsEnabled && maxTopK <= RoutingKernel.MaxTopK);
        if (e.Routing is not null) configure(e.Routing);   // host side; uploaded below
        using (var idsHost = tensor(ids, [batch, 1])) e.Ids.copy_(idsHost);
        using (var posHost = tensor(positions, [batch, 1])) e.Positions.copy_(posHost);
        e.Routing?.Upload();
        e.Routing?.ClearUsage();
        if (e.Eager)
        {
            e.Logits?.Dispose();
            e.Logits = Body(e);
        }
        else if (e.Runs == 0)
        {
            // Warm-up on the capture stream: cuBLAS workspaces and lazily loaded kernels exist before capture.
            cuda.synchronize(_lm.Device);
            using (CudaStreams.Use(_stream, DeviceIndex)) e.Logits = Body(e);
            cuda.synchronize(_lm.Device);
        }
        else
        {
            if (e.Graph is null)
            {
                e.Logits?.Dispose();
                e.Logits = null;
                Tensor? captured = null;
                try
                {
                    e.Graph = CudaGraph.Capture(_lm.Device, _stream, () => captured = Body(e));   // recorded, not run
                }
                catch (MeteoraException)
                {
                    e.Eager = true;   // do not try again every step: this shape runs eagerly
                    e.Logits = Body(e);
                    e.Runs++;
                    return (e.Logits, e.Routing);
                }
                e.Logits = captured;
            }
            e.Graph.Replay();
        }
        e.Runs++;
        return (e.Logits!, e.Routing);
    }

    private Tensor Body(Entry e)
    {
        if (_meteora is not null) _meteora.Routing.Rows = e.Routing;
        try
        {
            return _lm.ForwardRows(e.Ids, e.Positions, e.View, e.KeyLength).DetachFromDisposeScope();   // (B, V)
        }
        finally
        {
            if (_meteora is not null) _meteora.Routing.Rows = null;
        }
    }

    private Entry Get(int batch, int keys, bool kernel)
    {
        var key = (batch, keys, kernel);
        if (_entries.TryGetValue(key, out var e)) return e;
        var c = _lm.Config;
        e = new Entry
        {
            Ids = zeros(batch, 1, ScalarType.Int64, _lm.Device).DetachFromDisposeScope(),
            Positions = zeros(batch, 1, ScalarType.Int64, _lm.Device).DetachFromDisposeScope(),
            View = _cache.Rows(0, batch),
            Routing = _meteora is null ? null : new RowRouting(batch, _meteora.AdapterNames.Count, c.NumHiddenLayers, _groups, _lm.Device),
            KeyLength = keys,
        };
        _entries[key] = e;
        return e;
    }

    public void Dispose()
    {
        foreach (var e in _entries.Values) e.Dispose();
        _entries.Clear();
    }
}
