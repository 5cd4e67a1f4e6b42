using Meteora.Runtime;
using Meteora.Llama;
using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace Meteora.Moe;

/// <summary>
/// A projection with N LoRA adapters embedded as a mixture of experts: <c>y = W x + Σ_j w_j · s_j B_j A_j x</c>
/// over the top-k adapters that the gate <c>moe_gate (N, in)</c> picks for each token.
/// <para>
/// When the adapters are kept in the model dtype, the base weight, the stacked A and (in bfloat16/float16 models)
/// a model-dtype copy of the gate share one buffer <c>[W; A_all; G; 0]</c> (rows padded to a multiple of 64 so the
/// GEMM stays on its fast kernels). Inference runs that one GEMM for all three (from
/// <see cref="SplitGemmMinTokens"/> tokens on, the base rows and the [A_all; G] rows as two GEMMs), takes the
/// top-k of the gate columns, scales the rank columns by the routing weights in place and accumulates
/// <c>z B_allᵀ</c> into the output: on CUDA in bfloat16 the routing is one kernel (<see cref="RoutingKernel"/>), so
/// a projection is one GEMM, one kernel and one addmm. At decode sizes (up to <see cref="SelectiveMixKernel.MaxTokens"/>
/// tokens) the selective mix kernels replace that and read only the chosen adapters' B columns. Every strategy reads its logits from the same GEMM, so all
/// strategies route identically. Float32 models compute the
/// logits with the float32 gate itself (a separate small GEMM), exactly as specified. The float32
/// <c>moe_gate</c> is the trained and saved weight; <see cref="SyncFusedGate"/> refreshes the copy.
/// </para>
/// <para>
/// With <see cref="RoutingOptions.Arrow"/> the gate rows hold the adapters' Arrow prototypes and the logits become
/// |P x|, with adapters absent here masked out (−∞); everything else (GEMMs, router, strategies) is unchanged.
/// </para>
/// </summary>
public sealed class MeteoraLinear : Linear
{
    public readonly Parameter moe_gate;
    private readonly RoutingOptions _routing;
    private readonly Tensor? _fused;          // (out + ΣR + [N] + pad, in), or null when adapters are kept wider
    private readonly Tensor? _fusedT;         // its transpose (view), the GEMM's right operand
    private readonly Tensor? _baseT;          // (in, out) view of _fusedT: Wᵀ alone, for the split GEMMs
    private readonly Tensor? _adapterT;       // (in, ΣR + [L] + pad) view of _fusedT: [A_all; G]ᵀ alone
    private readonly Tensor? _gateCopy;       // (N, in) rows of _fused: the gate in the model dtype when that is not float32
    private readonly Tensor? _bT;             // (ΣR, out) view of B_allᵀ for the addmm
    private readonly int _n;
    private readonly long _gateColumn;        // where the gate logits start in the fused GEMM's output, or -1
    private readonly Tensor? _absent;         // (N,) bool: adapters that do not adapt this projection, when some (not all) do
    private (double X, double Abs)? _nearTieBound;  // ExactRanking's near-tie bound for this gate (a diagnostic; low-precision models), null: not computed
    private Runtime.CudaKernel? _routingKernel;  // resolved on first CUDA bfloat16 call
    private Runtime.CudaKernel? _rowKernel;      // the per-row variant (serving), likewise
    private (Runtime.CudaKernel, Runtime.CudaKernel)? _selectiveKernels;   // shrink and expand (decode sizes), likewise
    // Held for the process (an implicit Scalar can be finalized while the op runs; see RmsNorm).

    internal AdapterStack Adapters { get; }
    /// <summary>Where routing decisions go when set (trace, gate loss); null = not recorded.</summary>
    public RoutingRecorder? Recorder { get; set; }

    /// <summary>Creates the projection and stacks <paramref name="perAdapter"/> (null where an adapter does not target it).</summary>
    public static MeteoraLinear Create(ProjectionSite site, IReadOnlyList<(Tensor A, Tensor B, double Scale)?> perAdapter,
        RoutingOptions routing, ScalarType dtype, ScalarType adapterDtype, Device device)
    {
        int totalRank = perAdapter.Sum(p => p is { } x ? (int)x.A.shape[0] : 0);
        int gateRows = dtype == ScalarType.Float32 ? 0 : perAdapter.Count;
        int rows = (site.OutFeatures + totalRank + gateRows + 63) / 64 * 64;
        Tensor? fused = adapterDtype == dtype ? zeros(rows, site.InFeatures, dtype, device) : null;
        return new MeteoraLinear(site, perAdapter, routing, dtype, adapterDtype, device, fused);
    }

    private MeteoraLinear(ProjectionSite site, IReadOnlyList<(Tensor A, Tensor B, double Scale)?> perAdapter, RoutingOptions routing,
        ScalarType dtype, ScalarType adapterDtype, Device device, Tensor? fused)
        : base(site, fused is null ? empty(site.OutFeatures, site.InFeatures, dtype, device) : fused.narrow(0, 0, site.OutFeatures))
    {
        _n = perAdapter.Count;
        _routing = routing;
        _fused = fused?.DetachFromDisposeScope();
        int totalRank = perAdapter.Sum(p => p is { } x ? (int)x.A.shape[0] : 0);
        Adapters = new AdapterStack(site, perAdapter, adapterDtype, device, _fused?.narrow(0, site.OutFeatures, totalRank));
        moe_gate = ModelParameter.Create(zeros(_n, site.InFeatures, ScalarType.Float32, device));
        if (Adapters.Ranks.Any(r => r == 0) && Adapters.Ranks.Any(r => r > 0))
        {
            using var absent = tensor(Adapters.Ranks.Select(r => r == 0).ToArray());
            _absent = absent.to(device).clone().DetachFromDisposeScope();   // owned by the projection
        }
        _gateColumn = -1;
        if (_fused is not null)
        {
            // Without a fused buffer (adapters kept wider) inference takes the unfused path with the float32 gate.
            if (dtype != ScalarType.Float32)
            {
                _gateColumn = site.OutFeatures + totalRank;
                _gateCopy = _fused.narrow(0, _gateColumn, _n).DetachFromDisposeScope();
            }
            _fusedT = _fused.t().DetachFromDisposeScope();
            _baseT = _fusedT.narrow(1, 0, site.OutFeatures).DetachFromDisposeScope();
            _adapterT = _fusedT.narrow(1, site.OutFeatures, _fusedT.shape[1] - site.OutFeatures).DetachFromDisposeScope();
            _bT = Adapters.B.t().DetachFromDisposeScope();
        }
        RegisterComponents();
    }

    /// <summary>
    /// Copies the float32 gate into its model-dtype copy (after loading, editing or an optimiser step of
    /// <see cref="moe_gate"/>). Device ops only: training calls it after every step.
    /// </summary>
    public void SyncFusedGate()
    {
        if (_gateCopy is null) return;
        using var noGrad = no_grad();
        _gateCopy.copy_(moe_gate);
        _nearTieBound = null;   // the near-tie bound depends on the gate's row norms: recomputed when next asked for
    }

    /// <summary>The near-tie bound's coefficients for this gate (<see cref="ExactRanking.NearTies"/>; a diagnostic, one host sync).</summary>
    private (double X, double Abs) NearTieBound()
    {
        if (_nearTieBound is { } known) return known;
        using var noGrad = no_grad();
        using var rowNorms = moe_gate.square().sum(-1).sqrt_();                           // (L,) ‖Gⱼ‖
        using var largest = rowNorms.max();
        var bound = ExactRanking.Coefficients(_gateCopy!.dtype, Site.InFeatures, largest.item<float>());
        _nearTieBound = bound;
        return bound;
    }

    /// <summary>Whether this projection routes per batch row (<see cref="RoutingOptions.Rows"/>): batch rows must then stay as they are.</summary>
    internal bool RoutesPerRow => _routing.Rows is not null;

    /// <summary>The strategy this call uses: <see cref="MixingStrategy.Auto"/> picks dense or segment by size.</summary>
    public MixingStrategy Resolve(long tokens) =>
        _routing.Strategy != MixingStrategy.Auto ? _routing.Strategy
        : StrategyChooser.Choose(tokens, Adapters.TotalRank, Site.InFeatures, Site.OutFeatures);

    /// <summary>(…, in) → (…, out).</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var shape = x.shape;
        var x2 = x.reshape(-1, shape[^1]);                                               // (N, in)
        if (x2.stride(1) != 1) x2 = x2.contiguous();
        if (Recorder is { RecordInputs: true }) Recorder.AddInput(Site.Key, x2);
        var strategy = Resolve(x2.shape[0]);
        Tensor y;
        if (TakesUnfusedPath(x2))
            y = Unfused(x2, shape, strategy);
        else if (strategy == MixingStrategy.Dense && _routing.Forced is null && _routing.Rows is null && !_routing.Arrow
                 && SelectiveKernelsFor(x2) is { } selective)
        {
            // Decode sizes: the base output, float32 gate logits and rank values (one decode GEMV launch, or cuBLAS and the
            // shrink kernel), then the expand kernel adds only the chosen adapters' B columns.
            // A contiguous view can still start off a 16-byte boundary (a narrow of a wider row): then a fresh copy.
            var xa = SelectiveMixKernel.Aligned(x2) ? x2 : x2.contiguous() is var c && SelectiveMixKernel.Aligned(c) ? c : x2.clone();
            int r = Adapters.UniformRank!.Value, k = Math.Min(_routing.TopK, _n);
            if (DecodeGemv.Applies(xa, weight))
            {
                (y, var h) = DecodeGemv.ApplyWithAdapters(xa, weight, moe_gate, Adapters.A);   // (N, out), (N, L + ΣR)
                SelectiveMixKernel.Expand(selective.Item2, h, Adapters.B, y, _n, r, k, _routing.Temperature);
            }
            else
            {
                y = nn.functional.linear(x2, weight);                                     // (N, out)
                SelectiveMixKernel.Apply(selective, xa, moe_gate, Adapters.A, Adapters.B, y, _n, r, k, _routing.Temperature);
            }
        }
        else if (strategy == MixingStrategy.Dense && _routing.Forced is null && _routing.Rows is null && !_routing.Arrow
                 && RoutingKernelFor(x2, Math.Min(_routing.TopK, _n), rows: false) is { } kernel)
            y = KernelDense(x2, (h, z, g, r) => RoutingKernel.Apply(kernel, h, z, g, _n, r, Math.Min(_routing.TopK, _n), _routing.Temperature, KernelLogits(x2)));
        else if (strategy == MixingStrategy.Dense && _routing.Forced is null && _routing.Rows is { } rows && !_routing.Arrow && RoutingKernel.RowsEnabled
                 && shape.Length >= 3 && shape[0] == rows.Rows && rows.Adapters == _n && RoutingKernelFor(x2, rows.MaxTopK, rows: true) is { } rowKernel)
            // Per-row routing (serving): each batch row's mode, top-k and temperature, its last token's weights into the usage.
            y = KernelDense(x2, (h, z, g, r) => RoutingKernel.ApplyRows(rowKernel, h, z, g, _n, r, rows, (int)shape[^2], rows.GroupOf(Site.Layer), KernelLogits(x2)));
        else
        {
            var (baseOut, h, zColumn, gateColumn) = FusedGemm(x2);
            var logits = gateColumn >= 0 ? GateLogits(h.narrow(1, gateColumn, _n), x2, shape)            // (N, L)
                : nn.functional.linear(x2, moe_gate);                                     // float32 models: the gate itself
            var (indices, weights) = Route(logits, shape);
            if (Recorder is { RecordGateAgreement: true } && gateColumn >= 0 && !_routing.Arrow && _routing.Forced is null && _routing.Rows is null)
                // (N, L) the float32 gate's logits: the ones routed on when exact ranking made them, else computed here
                Recorder.AddGateAgreement(Site.Key, indices, logits.dtype == ScalarType.Float32 ? logits : ExactRanking.Logits(x2, moe_gate));
            y = strategy == MixingStrategy.Dense ? FusedDense(h.narrow(1, zColumn, Adapters.TotalRank), baseOut, indices, weights)
                : baseOut + Mixers.Mix(strategy, Adapters, x2, indices, weights);
        }
        return y.view([.. shape[..^1], y.shape[^1]]).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Whether projections of one input (q, k and v; gate and up) decode one token together: one decode GEMV launch for
    /// all their base rows, gates and rank values and one expand launch (default true; <c>METEORA_GROUPED_DECODE=off</c>
    /// runs each projection's own two launches).
    /// </summary>
    public static bool GroupedDecode { get; set; } = Environment.GetEnvironmentVariable("METEORA_GROUPED_DECODE") is not ("off" or "0" or "false");

    /// <summary>How many groups have run together in this process (a diagnostic for `bench model`).</summary>
    internal static long GroupedCalls;

    /// <summary>
    /// Whether projections of one input (q, k and v; gate and up) compute their float32 gate logits together on the
    /// training path: x widened to float32 once and one GEMM against their stacked gates, instead of one widening and one
    /// skinny float32 GEMM (and their backward passes) each (default true; <c>METEORA_GROUPED_TRAINING_LOGITS=off</c>).
    /// </summary>
    public static bool GroupedTrainingLogits { get; set; } = Environment.GetEnvironmentVariable("METEORA_GROUPED_TRAINING_LOGITS") is not ("off" or "0" or "false");

    /// <inheritdoc/>
    internal override Tensor[]? TryForwardGroup(IReadOnlyList<Linear> projections, Tensor x)
    {
        if (TryTrainingGroup(projections, x) is { } trained) return trained;
        if (!GroupedDecode || projections.Count is < 2 or > DecodeGemv.MaxSegments || x.device_type != DeviceType.CUDA
            || x.numel() != x.shape[^1])                                                   // one token
            return null;
        using var scope = NewDisposeScope();
        var x2 = x.reshape(1, x.shape[^1]);                                               // (1, in)
        if (!SelectiveMixKernel.Aligned(x2)) x2 = x2.contiguous();
        var members = new List<MeteoraLinear>();
        foreach (var p in projections)
        {
            // Each must take the one-token path on its own: plain dense routing, the selective kernels and the GEMV.
            if (p is not MeteoraLinear m || m.TakesUnfusedPath(x2) || m.Resolve(1) != MixingStrategy.Dense || m._routing.Forced is not null || m._routing.Rows is not null || m._routing.Arrow
                || m.SelectiveKernelsFor(x2) is null || !DecodeGemv.Applies(x2, m.weight))
                return null;
            members.Add(m);
        }
        var outputs = DecodeGemv.ApplyGroup(x2, members.Select(m => new DecodeGemv.Segment(m.weight, m.moe_gate, m.Adapters.A)).ToList());
        SelectiveMixKernel.ExpandGroup(members[0].SelectiveKernelsFor(x2)!.Value.Item2, members.Select((m, i) => new SelectiveMixKernel.ExpandPart(
            outputs[i].H!, m.Adapters.B, outputs[i].Y, m._n, m.Adapters.UniformRank!.Value, Math.Min(m._routing.TopK, m._n), m._routing.Temperature)).ToList());
        Interlocked.Increment(ref GroupedCalls);
        return outputs.Select(o => o.Y.view([.. x.shape[..^1], o.Y.shape[1]]).MoveToOuterDisposeScope()).ToArray();
    }

    /// <summary>Whether <see cref="forward"/> takes the unfused path for x2: training, adapters kept wider, or another dtype.</summary>
    private bool TakesUnfusedPath(Tensor x2) => _routing.TrainingForm || moe_gate.requires_grad || _fused is null || x2.dtype != _fused.dtype;

    /// <summary>
    /// Token count from which the base GEMM and the [A_all; G] GEMM run separately instead of as one GEMM over
    /// <c>[W; A_all; G]</c>. One GEMM saves a launch per projection, which is what counts while decoding; from
    /// about a thousand tokens two GEMMs win in the whole model (the base output comes out contiguous for the
    /// ops after it). Measured in docs/BENCHMARKS.md; <c>METEORA_SPLIT_GEMM_MIN_TOKENS</c> overrides it.
    /// </summary>
    public static long SplitGemmMinTokens { get; set; } =
        long.TryParse(Environment.GetEnvironmentVariable("METEORA_SPLIT_GEMM_MIN_TOKENS"), out long n) && n > 0 ? n : 1024;

    /// <summary>
    /// Dense mixing with the fused routing kernel: one launch routes and scales the rank columns z in place.
    /// Below <see cref="SplitGemmMinTokens"/>: one GEMM over [W; A_all; G], the kernel, then y += z B_allᵀ.
    /// From it on the base GEMM goes last, accumulating into <c>y = z B_allᵀ</c> (beta = 1): its read of y
    /// hides under the big GEMM's arithmetic, where a separate addmm would make one more memory-bound pass over
    /// the (N, out) output. <paramref name="route"/> launches the kernel on (h, rank column, gate column, rank r).
    /// </summary>
    private Tensor KernelDense(Tensor x2, Action<Tensor, long, long, int> route)
    {
        int outF = Site.OutFeatures, R = Adapters.TotalRank, r = Adapters.UniformRank!.Value;
        if (x2.shape[0] >= SplitGemmMinTokens)
        {
            var h = x2.matmul(_adapterT!);                                                // (N, ΣR + L + pad)
            route(h, 0, _gateColumn - outF, r);
            var y = h.narrow(1, 0, R).matmul(_bT!);                                       // (N, out) = z B_allᵀ
            return y.addmm_(x2, _baseT!);                                                 // y += x Wᵀ
        }
        var all = x2.matmul(_fusedT!);                                                    // (N, out + ΣR + L + pad)
        route(all, outF, _gateColumn, r);
        return all.narrow(1, 0, outF).addmm_(all.narrow(1, outF, R), _bT!);              // y += z B_allᵀ
    }

    /// <summary>
    /// The base output (N, out) and h, which holds the rank columns z = x A_allᵀ (N, ΣR) at
    /// <c>zColumn</c> and, in bfloat16/float16 models, the gate logits (N, L) at <c>gateColumn</c> (else −1):
    /// one GEMM over the fused buffer (base output and h are then views of one tensor), or from
    /// <see cref="SplitGemmMinTokens"/> on, two. Every strategy routes from these logits, so all route alike.
    /// </summary>
    private (Tensor BaseOut, Tensor H, long ZColumn, long GateColumn) FusedGemm(Tensor x2)
    {
        int outF = Site.OutFeatures;
        if (x2.shape[0] >= SplitGemmMinTokens)
        {
            var baseOut = x2.matmul(_baseT!);                                             // (N, out), contiguous
            var h = x2.matmul(_adapterT!);                                                // (N, ΣR + [L] + pad)
            return (baseOut, h, 0, _gateColumn >= 0 ? _gateColumn - outF : -1);
        }
        var all = x2.matmul(_fusedT!);                                                    // (N, out + ΣR + [L] + pad)
        return (all.narrow(1, 0, outF), all, outF, _gateColumn);
    }

    /// <summary>
    /// The fused routing kernel when it applies: bfloat16 on CUDA, the gate inside the fused GEMM, equal ranks,
    /// at most 256 adapters and top-8, no recorder (which needs the indices), and the kernel built on this device;
    /// with <paramref name="rows"/>, the per-row kernel (<see cref="RowRouting"/>).
    /// </summary>
    private Runtime.CudaKernel? RoutingKernelFor(Tensor x, int topK, bool rows)
    {
        if (!RoutingKernel.Enabled || Recorder is not null || x.device.type != DeviceType.CUDA || x.dtype != ScalarType.BFloat16
            || _gateColumn < 0 || Adapters.UniformRank is null || Adapters.TotalRank == 0
            || _n > RoutingKernel.MaxAdapters || topK > RoutingKernel.MaxTopK)
            return null;
        int device = x.device.index < 0 ? 0 : x.device.index;
        if (rows) return _rowKernel ??= RoutingKernel.TryGetRows(device, out _);
        _routingKernel ??= RoutingKernel.TryGet(device, out _) is { } k ? k : null;
        return _routingKernel;
    }

    /// <summary>
    /// The selective mix kernels (<see cref="SelectiveMixKernel"/>) when they apply: at most
    /// <see cref="SelectiveMixKernel.MaxTokens"/> tokens, the routing kernel's conditions (bfloat16 on CUDA, equal
    /// ranks, at most 256 adapters and top-8, no recorder), exact ranking on (they rank with the float32 gate), rank at
    /// most <see cref="SelectiveMixKernel.MaxRank"/> and inputs a multiple of 8 wide (16-byte loads).
    /// </summary>
    private (Runtime.CudaKernel, Runtime.CudaKernel)? SelectiveKernelsFor(Tensor x2)
    {
        if (!SelectiveMixKernel.Enabled || x2.shape[0] < 1 || x2.shape[0] > SelectiveMixKernel.MaxTokens || !ExactRanking.Enabled
            || Adapters.UniformRank is not { } r || r > SelectiveMixKernel.MaxRank || Site.InFeatures % 8 != 0
            || RoutingKernelFor(x2, Math.Min(_routing.TopK, _n), rows: false) is null)
            return null;
        int device = x2.device.index < 0 ? 0 : x2.device.index;
        return _selectiveKernels ??= SelectiveMixKernel.TryGet(device, out _);
    }

    /// <summary>
    /// Dense mixing with ATen ops on the fused GEMM's rank columns z = x A_allᵀ (N, ΣR), a view of h: scaled in
    /// place by each token's routing weight for the owning adapter, then <c>y += z B_allᵀ</c> (addmm_).
    /// </summary>
    private Tensor FusedDense(Tensor z, Tensor y, Tensor indices, Tensor weights)
    {
        int R = Adapters.TotalRank;
        if (R == 0) return y;
        long N = z.shape[0];
        if (Adapters.UniformRank is { } r)
        {
            // Equal ranks: one (N, L) routing matrix, broadcast over each adapter's r rank columns. Row routing
            // already gives it dense (indices 0…L−1), so it needs no scatter.
            var route = _routing.Rows is not null && weights.shape[1] == _n ? weights.to(z.dtype)
                : zeros(N, _n, z.dtype, z.device).scatter_(1, indices, weights.to(z.dtype));   // (N, L)
            z.view(N, _n, r).mul_(route.unsqueeze(-1));                                    // (N, L, r) *= route
        }
        else
        {
            var route = zeros(N, _n, ScalarType.Float32, z.device).scatter_(1, indices, weights);   // (N, L)
            z.mul_(route.index_select(1, Adapters.Owner).to(z.dtype));                       // (N, ΣR)
        }
        return y.addmm_(z, _bT!);
    }

    /// <summary>Separate float32 gate (differentiable), base GEMM and mixer: training and wide adapters; <paramref name="groupLogits"/>: this projection's columns of a group's logits.</summary>
    /// <summary>
    /// The training path of several projections of one input (<see cref="GroupedTrainingLogits"/>): their float32 gate
    /// logits from one GEMM over the stacked gates, each projection's routing and mixing as alone. Null when a member
    /// would not take the training path on its own.
    /// </summary>
    private Tensor[]? TryTrainingGroup(IReadOnlyList<Linear> projections, Tensor x)
    {
        if (!GroupedTrainingLogits || projections.Count < 2) return null;
        using var scope = NewDisposeScope();
        var shape = x.shape;
        var x2 = x.reshape(-1, shape[^1]);                                               // (N, in)
        if (x2.stride(1) != 1) x2 = x2.contiguous();
        var members = new List<MeteoraLinear>();
        foreach (var p in projections)
        {
            if (p is not MeteoraLinear m || !m.TakesUnfusedPath(x2) || m.Site.InFeatures != shape[^1]) return null;
            members.Add(m);
        }
        var gates = cat(members.Select(m => (Tensor)m.moe_gate).ToList());              // (Σ L, in) float32, differentiable
        var all = nn.functional.linear(x2.to(ScalarType.Float32), gates);                 // (N, Σ L)
        var outputs = new Tensor[members.Count];
        long at = 0;
        for (int i = 0; i < members.Count; i++)
        {
            var m = members[i];
            if (m.Recorder is { RecordInputs: true }) m.Recorder.AddInput(m.Site.Key, x2);
            var y = m.Unfused(x2, shape, m.Resolve(x2.shape[0]), all.narrow(1, at, m._n));   // (N, out)
            at += m._n;
            outputs[i] = y.view([.. shape[..^1], y.shape[^1]]).MoveToOuterDisposeScope();
        }
        return outputs;
    }

    private Tensor Unfused(Tensor x2, long[] shape, MixingStrategy strategy, Tensor? groupLogits = null)
    {
        var logits = groupLogits ?? nn.functional.linear(x2.to(ScalarType.Float32), moe_gate);   // (N, L) float32
        var (indices, weights) = Route(logits, shape);
        var y = nn.functional.linear(x2, weight);                                         // (N, out)
        // Adapters may be kept wider than the model (float32 while training them on a bfloat16 base).
        var xa = x2.dtype == Adapters.A.dtype ? x2 : x2.to(Adapters.A.dtype);
        return y + Mixers.Mix(strategy, Adapters, xa, indices, weights).to(y.dtype);   // Mix runs Auto as dense
    }

    /// <summary>The float32 gate's logits (N, L) for the routing kernel to rank from, or null: the fused GEMM's (exact ranking off).</summary>
    private Tensor? KernelLogits(Tensor x2) => ExactRanking.Enabled ? ExactRanking.Logits(x2, moe_gate) : null;

    /// <summary>
    /// The logits (N, L) a low-precision model routes from: the float32 gate's of the same input
    /// (<see cref="ExactRanking"/>), or the fused GEMM's <paramref name="low"/> (model dtype) with exact ranking off or
    /// where routing is forced (the logits are not used). A recorder asking for near ties gets the diagnostic count.
    /// </summary>
    private Tensor GateLogits(Tensor low, Tensor x2, long[] shape)
    {
        if (!ExactRanking.Enabled || _routing.Forced is { } forced && forced.AppliesTo(shape) && _routing.Rows is null) return low;
        var logits = ExactRanking.Logits(x2, moe_gate);                                   // (N, L) float32
        if (Recorder is { RecordNearTies: true } && !_routing.Arrow)
        {
            // Per-row routing tests each token at its row's k ((B, T, in) or (B, in) input; RowRoute refuses other shapes).
            using var scope = NewDisposeScope();
            Tensor pastTopK;
            if (_routing.Rows is { } rows && x2.shape[0] % rows.Rows == 0)
                pastTopK = rows.PastTopK(x2.shape[0] / rows.Rows);                          // (N, L)
            else
            {
                using Scalar k = Math.Min(_routing.TopK, _n), n = _n;                      // held for the ops (see RmsNorm)
                pastTopK = arange(n, ScalarType.Int64, low.device).ge(k).unsqueeze(0);    // (1, L)
            }
            Recorder.AddNearTies(Site.Key, ExactRanking.NearTies(low, x2, NearTieBound(), pastTopK));
        }
        return logits;
    }

    private (Tensor Indices, Tensor Weights) Route(Tensor logits, long[] shape)
    {
        int k = Math.Min(_routing.TopK, _n);
        if (_routing.Arrow) logits = ArrowLogits(logits);
        if (_routing.Rows is { } rows) return RowRoute(rows, logits, shape);
        var (indices, weights) = _routing.Forced is { } forced && forced.AppliesTo(shape)
            ? forced.Positions is { } positions && shape.Length == 3 && shape[0] == 1 && shape[1] == positions.Count
                ? PositionRoute(positions, logits, k)
                : ForcedRoute(forced.Adapter, logits.shape[0], k, logits.device)
            : Router.Route(logits, k, _routing.Temperature, _routing.TrainingForm);
        if (Recorder is not null)
            Recorder.Add(Site.Key, logits.to(ScalarType.Float32).view([.. shape[..^1], _n]), indices.view([.. shape[..^1], k]),
                weights.view([.. shape[..^1], k]));
        return (indices, weights);
    }

    /// <summary>
    /// Per-row routing (<see cref="RowRouting"/>): every adapter is a slot, indices (N, L) = 0…L−1 and weights the
    /// dense routing matrix (zero for unrouted adapters), which every mixer handles like a top-L.
    /// </summary>
    private (Tensor Indices, Tensor Weights) RowRoute(RowRouting rows, Tensor logits, long[] shape)
    {
        using var scope = NewDisposeScope();
        long tokens = logits.shape[0];
        long batch = shape.Length >= 3 ? shape[0] : tokens;                               // (B, T, in) or (N, in)
        if (rows.Adapters != _n || batch != rows.Rows)
            throw new MeteoraException($"row routing for {rows.Rows} rows of {rows.Adapters} adapters does not fit {Site.Key}: batch {batch}, {_n} adapters");
        long perRow = tokens / rows.Rows;
        var weights = rows.Route(logits, perRow);                                          // (N, L) float32
        rows.AddUsage(weights, perRow, Site.Layer);
        var indices = rows.Indices(perRow);                                                // (N, L): 0…L−1, owned by rows
        if (Recorder is not null)
            Recorder.Add(Site.Key, logits.to(ScalarType.Float32).view([.. shape[..^1], _n]), indices.view([.. shape[..^1], _n]),
                weights.view([.. shape[..^1], _n]));
        return (indices, weights.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Arrow's routing logits from the prototype logits P x (N, L): |P x|, and −∞ for adapters that do not adapt
    /// this projection (they are no candidates; a top-k that reaches them gives them weight 0). A projection that
    /// no adapter adapts keeps |P x| = 0 for all (its stack is empty, so the weights do not matter).
    /// </summary>
    private Tensor ArrowLogits(Tensor logits)
    {
        var scores = logits.abs();                                                        // (N, L)
        return _absent is null ? scores : scores.masked_fill_(_absent, HeldScalars.NegativeInfinity);
    }

    /// <summary>
    /// Routing of one sequence's T positions by <paramref name="positions"/> (<see cref="ForcedRouting.Positions"/>): a
    /// position with an adapter gets it with weight 1 (the next k − 1 adapters with weight 0, as <see cref="ForcedRoute"/>),
    /// one with −1 the gates' top-k. A diagnostic: builds its index tensor on the host.
    /// </summary>
    private (Tensor Indices, Tensor Weights) PositionRoute(IReadOnlyList<int> positions, Tensor logits, int k)
    {
        using var scope = NewDisposeScope();
        var (gated, gatedWeights) = Router.Route(logits, k, _routing.Temperature, _routing.TrainingForm);   // (T, k)
        int t = positions.Count;
        var ids = new long[t * k];
        var w = new float[t * k];
        var fromGates = new bool[t];
        for (int j = 0; j < t; j++)
        {
            int a = positions[j];
            if (a < -1 || a >= _n) throw new MeteoraException($"forced routing: adapter {a} at position {j} outside −1…{_n - 1}");
            fromGates[j] = a < 0;
            for (int s = 0; s < k; s++) ids[j * k + s] = a < 0 ? 0 : (a + s) % _n;
            w[j * k] = 1f;
        }
        using var mask = tensor(fromGates).to(logits.device).unsqueeze(1);                 // (T, 1)
        using var forcedIds = tensor(ids).view(t, k).to(logits.device);
        using var forcedW = tensor(w).view(t, k).to(logits.device);
        var indices = where(mask, gated, forcedIds);
        var weights = where(mask, gatedWeights.to(ScalarType.Float32), forcedW);
        return (indices.MoveToOuterDisposeScope(), weights.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// (N, k) indices and weights that put every token on <paramref name="adapter"/> with weight 1; the other k − 1
    /// slots name the next adapters with weight 0, so every mixer sees a well-formed top-k.
    /// </summary>
    private (Tensor Indices, Tensor Weights) ForcedRoute(int adapter, long tokens, int k, Device device)
    {
        if (adapter < 0 || adapter >= _n) throw new MeteoraException($"forced routing: adapter {adapter} outside 0…{_n - 1}");
        using var scope = NewDisposeScope();
        // Device ops only (no host copies), so a CUDA graph can capture them; Scalars held for the ops (see RmsNorm).
        using Scalar count = k, start = adapter, modulus = _n, one = 1.0;
        var slots = arange(count, ScalarType.Int64, device).add_(start, HeldScalars.One).remainder_(modulus);    // (k)
        var indices = slots.unsqueeze(0).expand(tokens, k).contiguous();                        // (N, k)
        var weights = zeros(tokens, k, ScalarType.Float32, device);
        weights.select(1, 0).fill_(one);                                                        // (N, k): 1, 0, …
        return (indices.MoveToOuterDisposeScope(), weights.MoveToOuterDisposeScope());
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Adapters.Dispose();
            _absent?.Dispose();
            _gateCopy?.Dispose();
            _baseT?.Dispose();
            _adapterT?.Dispose();
            _fusedT?.Dispose();
            _bT?.Dispose();
            _fused?.Dispose();
        }
        base.Dispose(disposing);
    }
}
