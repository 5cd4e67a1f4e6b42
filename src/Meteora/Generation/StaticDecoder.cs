using Meteora.Llama;
using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Generation;

/// <summary>
/// Decode steps with static shapes and addresses (gpt-fast style): the step's token ids, positions and KV-cache
/// slot live in device tensors that the step itself advances, so on CUDA the whole step — every layer, the
/// MeteoRA routing included — is captured once into a <see cref="CudaGraph"/> and then replayed with a single
/// launch. At batch 1 a decode step is bound by the host issuing ~2 000–6 000 small kernels, not by the GPU;
/// replaying removes that cost. Without CUDA graphs (CPU, or <c>useGraph: false</c>) the same step runs eagerly,
/// which is how the tests check it against <see cref="LlamaForCausalLM.forward(Tensor, Tensor, KvCache?, bool)"/>.
/// <para>
/// Usage: prefill normally, then <see cref="Start"/> with the first token to decode and its position,
/// <see cref="Step"/> for its logits, <see cref="Feed"/> with the chosen tokens, <see cref="Step"/> again…
/// The first step runs eagerly on the capture stream (warm-up), the second is captured and replayed.
/// </para>
/// </summary>
internal sealed class StaticDecoder : IDisposable
{

    private readonly LlamaForCausalLM _model;
    private readonly KvCache _cache;
    private readonly bool _useGraph;
    private readonly Tensor _ids;          // (B, 1) int64: tokens of the coming step
    private readonly Tensor _positions;    // (B, 1) int64: their positions
    private readonly Tensor _slot;         // (1,) int64: their cache slot
    private CudaStreams.StreamValue _stream;
    private CudaGraph? _graph;
    private Tensor? _logits;               // (B, V) of the last step: the graph's output tensor once captured
    private int _steps;

    /// <summary>Whether steps are replayed from a CUDA graph (from the second step on).</summary>
    public bool Graphed => _useGraph;

    /// <param name="model">The model; its projections must not record routing (a recorder would be frozen in the graph).</param>
    /// <param name="cache">The cache the prefill filled; steps write at <see cref="KvCache.Length"/> onwards.</param>
    /// <param name="useGraph">Capture and replay a CUDA graph; needs a CUDA model and a libtorch that exports CUDAGraph.</param>
    public StaticDecoder(LlamaForCausalLM model, KvCache cache, bool useGraph)
    {
        if (useGraph && model.Device.type != DeviceType.CUDA)
            throw new MeteoraException($"CUDA-graph decoding needs a CUDA model, not {model.Device}");
        if (useGraph && !CudaGraph.Available)
            throw new MeteoraException("CUDA-graph decoding: this libtorch does not export at::cuda::CUDAGraph");
        _model = model;
        _cache = cache;
        _useGraph = useGraph;
        var device = model.Device;
        _ids = zeros(cache.BatchSize, 1, ScalarType.Int64, device).DetachFromDisposeScope();
        _positions = zeros(cache.BatchSize, 1, ScalarType.Int64, device).DetachFromDisposeScope();
        _slot = zeros(1, ScalarType.Int64, device).DetachFromDisposeScope();
        if (useGraph) _stream = CudaStreams.SideStream(DeviceIndex);
    }

    private int DeviceIndex => _model.Device.index < 0 ? 0 : _model.Device.index;

    /// <summary>
    /// Sets the first step: tokens (B, 1) or (B,) at <paramref name="positions"/> (B, 1), written to cache slot
    /// <see cref="KvCache.Length"/>.
    /// </summary>
    public void Start(Tensor tokens, Tensor positions)
    {
        using var noGrad = no_grad();
        Feed(tokens);
        _positions.copy_(positions.view(_cache.BatchSize, 1));
        using var slot = _cache.Length.ToScalar();   // held for the op (see HeldScalars.One)
        _slot.fill_(slot);
    }

    /// <summary>Sets the tokens (B, 1) or (B,) of the next step; its positions and slot follow the last step's.</summary>
    public void Feed(Tensor tokens)
    {
        using var noGrad = no_grad();
        _ids.copy_(tokens.view(_cache.BatchSize, 1));
    }

    /// <summary>
    /// Runs one step and returns its logits (B, V). The tensor belongs to the decoder and is overwritten by the
    /// next step: read or copy it before calling again, and do not dispose it.
    /// </summary>
    public Tensor Step()
    {
        if (_cache.Length >= _cache.MaxLength)
            throw new MeteoraException($"decode step at slot {_cache.Length} exceeds the KV cache of {_cache.MaxLength}");
        using var noGrad = no_grad();
        if (!_useGraph)
        {
            _logits?.Dispose();
            _logits = Body();
        }
        else if (_steps == 0)
        {
            // Warm-up on the capture stream: creates the cuBLAS workspace and loads kernels for it before capture.
            cuda.synchronize(_model.Device);
            using (CudaStreams.Use(_stream, DeviceIndex)) _logits = Body();
            cuda.synchronize(_model.Device);
        }
        else
        {
            if (_graph is null)
            {
                _logits?.Dispose();
                Tensor? captured = null;
                _graph = CudaGraph.Capture(_model.Device, _stream, () => captured = Body());   // recorded, not run
                _logits = captured;
            }
            _graph.Replay();
        }
        _steps++;
        _cache.Length++;
        return _logits!;
    }

    /// <summary>The step: logits for (ids, positions) at the slot, then positions and slot move on by one.</summary>
    private Tensor Body()
    {
        var logits = _model.ForwardAtSlot(_ids, _positions, _cache, _slot).DetachFromDisposeScope();   // (B, V)
        _positions.add_(HeldScalars.One, HeldScalars.One);
        _slot.add_(HeldScalars.One, HeldScalars.One);
        PhaseMarks.Mark("step bookkeeping");
        return logits;
    }

    public void Dispose()
    {
        _graph?.Dispose();   // synchronises first: no replay still reads the tensors below
        _logits?.Dispose();
        _ids.Dispose();
        _positions.Dispose();
        _slot.Dispose();
    }
}
