using Meteora.Llama;
using Meteora.Moe;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Serving;

/// <summary>
/// The serving engine (vLLM's split: this loop owns the model; HTTP and benchmarks only submit requests and read
/// their events). Continuous batching over a static KV cache of <see cref="EngineOptions.MaxBatch"/> rows: a
/// request waits for a free row, prefills its prompt in chunks of <see cref="EngineOptions.PrefillChunk"/>
/// tokens (one chunk per loop step, so running decodes wait at most one chunk), then decodes one token per step
/// together with every other running row, each row with its own sampling, seed, routing mode, top-k and
/// temperature (<see cref="RowRouting"/>), and leaves the moment it finishes or its client cancels.
/// </summary>
public sealed class ServingEngine : IDisposable
{
    private readonly ServingModel _model;
    private readonly EngineOptions _options;
    private readonly KvCache _cache;                       // (MaxBatch, Hkv, MaxContext + 1, d): slot MaxContext is scratch
    private readonly object _lock = new();
    private readonly Queue<EngineRequest> _waiting = new();
    private readonly EngineRequest?[] _rows;
    private readonly List<EngineRequest> _prefilling = new();   // admission order
    private readonly Dictionary<int, (KvCache View, RowRouting? Routing)> _buckets = new();
    private readonly RowRouting? _prefillRouting;
    private readonly int[] _groupProjections;              // MeteoRA projections per layer group
    private readonly long[,] _selections;                  // (G, N) gate-routed tokens whose group mean weight peaked at each adapter
    private readonly DecodeGraphs? _graphs;                // CUDA-graph decode steps (EngineOptions.CudaGraphs on CUDA)
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _thread;
    private volatile bool _stopping;
    private volatile bool _ready;
    private volatile bool _warmedUp;
    private int _running;

    /// <summary>Prompt + generated tokens a sequence may hold.</summary>
    public int MaxContext { get; }
    public ServingModel Model => _model;
    public EngineOptions Options => _options;
    /// <summary>Rows decoding or prefilling now.</summary>
    public int Running => Volatile.Read(ref _running);
    /// <summary>Requests waiting for a row.</summary>
    public int Waiting { get { lock (_lock) return _waiting.Count; } }
    /// <summary>True once the warm-up request has gone through the loop without error.</summary>
    public bool Ready => _ready;
    /// <summary>True once the warm-up has run (successfully or not).</summary>
    public bool WarmedUp => _warmedUp;
    /// <summary>Engine loop iterations that did work (each: at most one prefill chunk, then one decode step).</summary>
    public long Steps { get; private set; }
    /// <summary>Why the warm-up request failed, or null (the server then does not report ready).</summary>
    public string? WarmupError { get; private set; }
    /// <summary>Layer groups routing is reported by, as (first, last) layers.</summary>
    public IReadOnlyList<(int First, int Last)> RoutingGroups { get; }

    public ServingEngine(ServingModel model, EngineOptions options)
    {
        var config = model.Lm.Config;
        options.Validate(config.MaxPositionEmbeddings);
        _model = model; _options = options;
        MaxContext = options.MaxContext ?? config.MaxPositionEmbeddings;
        _cache = new KvCache(config, options.MaxBatch, MaxContext + 1, model.Lm.DType, model.Lm.Device);
        _rows = new EngineRequest?[options.MaxBatch];
        int n = model.AdapterNames.Count, layers = config.NumHiddenLayers, groups = Math.Min(options.RoutingGroups, layers);
        if (model.Meteora is not null) _prefillRouting = new RowRouting(1, n, layers, groups, model.Lm.Device);
        RoutingGroups = RowRouting.GroupLayers(groups, layers);
        _groupProjections = new int[groups];
        foreach (var p in model.Meteora?.Projections ?? []) _groupProjections[RowRouting.GroupOf(p.Site.Layer, groups, layers)]++;
        _selections = new long[RoutingGroups.Count, n];
        if (options.CudaGraphs && DecodeGraphs.Available(model.Lm))
            _graphs = new DecodeGraphs(model.Lm, model.Meteora, _cache, MaxContext + 1, RoutingGroups.Count);
        _thread = new Thread(Loop) { IsBackground = true, Name = "meteora-engine" };
        _thread.Start();
    }

    /// <summary>
    /// Queues a sequence. Throws <see cref="ServingRequestException"/> for a request that cannot be served as
    /// given and <see cref="EngineBusyException"/> when the waiting queue is full. Read the result from
    /// <see cref="EngineRequest.Events"/>; cancelling <paramref name="cancellation"/> frees its row within a step.
    /// </summary>
    public EngineRequest Submit(string id, int[] prompt, SamplingSettings sampling, RouteChoice route, CancellationToken cancellation = default)
    {
        sampling.Validate();
        if (prompt.Length == 0) throw new ServingRequestException("the prompt has no tokens", "prompt");
        int vocab = _model.Lm.Config.VocabSize;
        foreach (int t in prompt)
            if (t < 0 || t >= vocab) throw new ServingRequestException($"token id {t} is outside the vocabulary of {vocab}", "prompt");
        if ((long)prompt.Length + sampling.MaxTokens > MaxContext)
            throw new ServingRequestException($"This model's maximum context length is {MaxContext} tokens. However, you requested "
                + $"{prompt.Length + sampling.MaxTokens} tokens ({prompt.Length} in the prompt, {sampling.MaxTokens} for the completion). "
                + "Please reduce the prompt or max_tokens.", "max_tokens", "context_length_exceeded");
        CheckRoute(route);
        var request = new EngineRequest(id, prompt, sampling, route, new OutputText(_model.Tokenizer, prompt, sampling.Stop), cancellation);
        lock (_lock)
        {
            string? refused = _stopping ? "the server is shutting down"
                // Requests that a free row takes at the next step do not count as waiting.
                : _waiting.Count >= _options.MaxQueue + Math.Max(0, _options.MaxBatch - Running) ? $"the queue is full ({_options.MaxQueue} requests waiting); retry later"
                : null;
            if (refused is not null)
            {
                request.Finish("abort");   // frees its generator; nobody reads its events
                throw new EngineBusyException(refused, _stopping);
            }
            _waiting.Enqueue(request);
        }
        try { _wake.Release(); }
        catch (ObjectDisposedException) { throw new EngineBusyException("the server is shutting down", stopping: true); }
        return request;
    }

    /// <summary>
    /// A route the engine's rows can take, checked here once rather than failing a batched step later: adapters to
    /// route between, the gates' top-k within 1…N and temperature ≥ <see cref="RowRouting.MinTemperature"/>, a forced
    /// adapter that exists.
    /// </summary>
    private void CheckRoute(RouteChoice route)
    {
        int n = _model.AdapterNames.Count;
        if (route.Mode != RouteMode.Base && _model.Meteora is null)
            throw new ServingRequestException("this server has no adapters", "model", "model_not_found");
        if (route.Mode == RouteMode.Gates && (route.TopK < 1 || route.TopK > n))
            throw new ServingRequestException($"meteora.top_k: {route.TopK} must be between 1 and the {n} adapters", "meteora.top_k");
        if (route.Mode == RouteMode.Gates && !(route.Temperature >= RowRouting.MinTemperature && double.IsFinite(route.Temperature)))
            throw new ServingRequestException($"meteora.temperature: {route.Temperature} must be a number ≥ {RowRouting.MinTemperature}", "meteora.temperature");
        if (route.Mode == RouteMode.Adapter && (route.Adapter < 0 || route.Adapter >= n))
            throw new ServingRequestException($"adapter {route.Adapter} is outside 0…{n - 1}", "model", "model_not_found");
    }

    /// <summary>How often each adapter had the largest mean weight in each layer group, over gate-routed tokens: (G, N).</summary>
    public long[,] SelectionCounts()
    {
        lock (_selections) return (long[,])_selections.Clone();
    }

    private void Loop()
    {
        Warmup();
        while (true)
        {
            try
            {
                if (_stopping) { AbortAll("the server is shutting down"); return; }
                DropCancelled();
                Admit();
                if (_prefilling.Count == 0 && _rows.All(r => r is null || r.State != RequestState.Decoding))
                {
                    _wake.Wait(100);
                    continue;
                }
                using var noGrad = no_grad();
                Steps++;
                if (_prefilling.Count > 0) Guard([_prefilling[0]], () => PrefillChunk(_prefilling[0]));
                var decoding = _rows.Where(r => r is { State: RequestState.Decoding }).Select(r => r!).ToList();
                if (decoding.Count > 0) Guard(decoding, () => DecodeStep(decoding));
            }
            catch (Exception e)
            {
                // Nothing outside a guarded step should throw; if it does, fail what is running, not the loop.
                AbortAll($"engine error: {e.Message}");
            }
        }
    }

    /// <summary>Runs a step; if it fails, only the requests in it end (with the error), the others go on.</summary>
    private void Guard(IReadOnlyList<EngineRequest> requests, Action step)
    {
        try { step(); }
        catch (Exception e)
        {
            foreach (var r in requests) Release(r, "abort", $"engine error: {e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>One short request through prefill and decode, so kernels are loaded before the server says ready.</summary>
    private void Warmup()
    {
        try
        {
            var route = _model.Meteora is null ? RouteChoice.Base : new RouteChoice(RouteMode.Gates, -1, _model.DefaultTopK, _model.DefaultTemperature);
            var r = new EngineRequest("warmup", [_model.Tokenizer.BosId ?? 0], new SamplingSettings { MaxTokens = 2, Temperature = 0, IgnoreEos = true },
                route, new OutputText(_model.Tokenizer, [], []), default);
            using var noGrad = no_grad();
            r.Slot = 0; _rows[0] = r; r.State = RequestState.Prefilling; _running = 1;
            PrefillChunk(r);
            if (r.State == RequestState.Decoding) DecodeStep([r]);
            if (r.State != RequestState.Finished) Release(r, "abort");
        }
        catch (Exception e)
        {
            WarmupError = $"{e.GetType().Name}: {e.Message}";   // /ready reports it; requests still run, each guarded
        }
        finally
        {
            Array.Clear(_rows); _prefilling.Clear(); _running = 0;
            lock (_selections) Array.Clear(_selections);
            _ready = WarmupError is null;
            _warmedUp = true;
        }
    }

    private void DropCancelled()
    {
        foreach (var r in _rows.Where(r => r is not null && r.Cancellation.IsCancellationRequested).ToList()) Release(r!, "abort");
        lock (_lock)
        {
            if (!_waiting.Any(r => r.Cancellation.IsCancellationRequested)) return;
            var keep = _waiting.Where(r => !r.Cancellation.IsCancellationRequested).ToList();
            foreach (var r in _waiting.Except(keep)) r.Finish("abort");
            _waiting.Clear();
            keep.ForEach(_waiting.Enqueue);
        }
    }

    /// <summary>Moves waiting requests into free rows, lowest row first (keeps the decoded batch small).</summary>
    private void Admit()
    {
        lock (_lock)
        {
            for (int row = 0; row < _rows.Length && _waiting.Count > 0; row++)
            {
                if (_rows[row] is not null) continue;
                var r = _waiting.Dequeue();
                r.Slot = row; r.State = RequestState.Prefilling; r.Prefilled = 0;
                _rows[row] = r;
                _prefilling.Add(r);
                Interlocked.Increment(ref _running);
            }
        }
    }

    /// <summary>Prefills the next chunk of <paramref name="r"/>'s prompt into its row; after the last chunk, picks its first token.</summary>
    private void PrefillChunk(EngineRequest r)
    {
        using var scope = NewDisposeScope();
        int n = Math.Min(_options.PrefillChunk, r.Prompt.Length - r.Prefilled);
        var device = _model.Lm.Device;
        using var view = _cache.Rows(r.Slot, 1);
        view.Length = r.Prefilled;
        var ids = tensor(r.Prompt.AsSpan(r.Prefilled, n).ToArray().Select(t => (long)t).ToArray(), [1, n], device: device);   // (1, n)
        var positions = arange(r.Prefilled, r.Prefilled + n, ScalarType.Int64, device).unsqueeze(0);                           // (1, n)
        if (_prefillRouting is not null) { Configure(_prefillRouting, 0, r); _prefillRouting.Upload(); _prefillRouting.ClearUsage(); }
        Tensor logits;
        try
        {
            if (_model.Meteora is { } m) m.Routing.Rows = _prefillRouting;
            logits = _model.Lm.forward(ids, positions, view, lastOnly: true);                                                   // (1, V)
        }
        finally
        {
            if (_model.Meteora is { } m) m.Routing.Rows = null;
        }
        r.Prefilled += n;
        r.Position = r.Prefilled;
        if (r.Prefilled < r.Prompt.Length) return;
        _prefilling.Remove(r);
        r.State = RequestState.Decoding;
        var pick = RowSampler.Choose(logits, [(0, r)], _model.Tokenizer)[0];
        float[]? usage = _prefillRouting?.Usage?.cpu().data<float>().ToArray();                                                // (1·G·N)
        Accept(r, pick, usage, 0);
    }

    /// <summary>One decode step for every decoding row: rows [0, bucket) run together, idle rows write to the scratch slot.</summary>
    private void DecodeStep(IReadOnlyList<EngineRequest> decoding)
    {
        using var scope = NewDisposeScope();
        int top = decoding.Max(r => r.Slot) + 1, bucket = Bucket(top);
        var ids = new long[bucket];
        var positions = Enumerable.Repeat((long)MaxContext, bucket).ToArray();          // idle rows: scratch slot
        foreach (var r in decoding) { ids[r.Slot] = r.NextToken; positions[r.Slot] = r.Position; }
        void ConfigureRows(RowRouting routing)
        {
            for (int row = 0; row < bucket; row++) routing.SetBase(row);
            foreach (var r in decoding) Configure(routing, r.Slot, r);
        }
        int keyLength = (int)decoding.Max(r => r.Position) + 1;
        Tensor logits;
        RowRouting? routing;
        if (_graphs is not null)
        {
            int maxTopK = decoding.Where(r => r.Route.Mode == RouteMode.Gates).Select(r => r.Route.TopK).DefaultIfEmpty(1).Max();
            (logits, routing) = _graphs.Step(bucket, _graphs.KeyBucket(keyLength), ids, positions, ConfigureRows, maxTopK);   // (B, V), the graph's
        }
        else
        {
            KvCache view;
            (view, routing) = BucketState(bucket);
            if (routing is not null) { ConfigureRows(routing); routing.Upload(); routing.ClearUsage(); }
            var device = _model.Lm.Device;
            var idsT = tensor(ids, [bucket, 1], device: device);                          // (B, 1)
            var positionsT = tensor(positions, [bucket, 1], device: device);              // (B, 1)
            try
            {
                if (_model.Meteora is { } m) m.Routing.Rows = routing;
                logits = _model.Lm.ForwardRows(idsT, positionsT, view, keyLength);        // (B, V)
            }
            finally
            {
                if (_model.Meteora is { } m) m.Routing.Rows = null;
            }
        }
        var picks = RowSampler.Choose(logits, decoding.Select(r => (r.Slot, r)).ToList(), _model.Tokenizer);
        float[]? usage = routing?.Usage?.cpu().data<float>().ToArray();                   // (B·G·N)
        for (int i = 0; i < decoding.Count; i++)
        {
            decoding[i].Position++;
            Accept(decoding[i], picks[i], usage, decoding[i].Slot);
        }
    }

    private static void Configure(RowRouting routing, int row, EngineRequest r)
    {
        switch (r.Route.Mode)
        {
            case RouteMode.Gates: routing.SetGates(row, r.Route.TopK, r.Route.Temperature); break;
            case RouteMode.Adapter: routing.SetAdapter(row, r.Route.Adapter); break;
            default: routing.SetBase(row); break;
        }
    }

    /// <summary>Takes a row's new token: emits it, then ends the sequence at EOS, a stop string, max_tokens or the context.</summary>
    private void Accept(EngineRequest r, RowSampler.Pick pick, float[]? usage, int row)
    {
        int offset = r.Text.Released;
        r.Generated.Add(pick.Token);
        string text = r.Text.Add(pick.Token);
        var routing = usage is not null && (r.Route.ReturnRouting || r.Route.Mode == RouteMode.Gates) ? RoutingOf(usage, row) : null;
        if (routing is not null && r.Route.Mode == RouteMode.Gates) CountSelections(routing);   // the warm-up's are cleared after it
        var bytes = _model.Tokenizer.TokenBytes(pick.Token);
        r.Emit(new TokenEvent(pick.Token, text, System.Text.Encoding.UTF8.GetString(bytes), bytes, pick.Logprob, pick.Top,
            r.Route.ReturnRouting ? routing : null, offset, Steps));
        bool eos = !r.Sampling.IgnoreEos && _model.EosIds.Contains(pick.Token);
        if (eos || r.Text.Stopped) Release(r, "stop");
        else if (r.Generated.Count >= r.Sampling.MaxTokens || r.Position >= MaxContext) Release(r, "length");
        else r.NextToken = pick.Token;
    }

    /// <summary>Row <paramref name="row"/>'s (G, N) usage sums as mean weights per group.</summary>
    private TokenRouting RoutingOf(float[] usage, int row)
    {
        int g = _groupProjections.Length, n = _model.AdapterNames.Count;
        var groups = new float[g][];
        for (int i = 0; i < g; i++)
        {
            groups[i] = new float[n];
            for (int j = 0; j < n; j++) groups[i][j] = _groupProjections[i] == 0 ? 0 : usage[(row * g + i) * n + j] / _groupProjections[i];
        }
        return new TokenRouting(groups);
    }

    private void CountSelections(TokenRouting routing)
    {
        lock (_selections)
            for (int g = 0; g < routing.Groups.Length; g++)
            {
                var w = routing.Groups[g];
                if (w.Length == 0 || w.All(x => x == 0)) continue;
                _selections[g, Array.IndexOf(w, w.Max())]++;
            }
    }

    /// <summary>Ends <paramref name="r"/> and frees its row.</summary>
    private void Release(EngineRequest r, string reason, string? error = null)
    {
        if (r.State == RequestState.Finished) return;
        if (r.Slot >= 0 && _rows[r.Slot] == r)
        {
            _rows[r.Slot] = null;
            Interlocked.Decrement(ref _running);
        }
        _prefilling.Remove(r);
        r.Finish(reason, error);
    }

    private void AbortAll(string error)
    {
        foreach (var r in _rows.Where(r => r is not null).ToList()) Release(r!, "abort", error);
        lock (_lock)
        {
            while (_waiting.Count > 0) _waiting.Dequeue().Finish("abort", error);
        }
    }

    /// <summary>The decode batch for rows [0, <paramref name="rows"/>): the next power of two, at most MaxBatch.</summary>
    private int Bucket(int rows)
    {
        int b = 1;
        while (b < rows) b *= 2;
        return Math.Min(b, _options.MaxBatch);
    }

    private (KvCache View, RowRouting? Routing) BucketState(int bucket)
    {
        if (!_buckets.TryGetValue(bucket, out var state))
        {
            var c = _model.Lm.Config;
            state = (_cache.Rows(0, bucket), _model.Meteora is null ? null
                : new RowRouting(bucket, _model.AdapterNames.Count, c.NumHiddenLayers, RoutingGroups.Count, _model.Lm.Device));
            _buckets[bucket] = state;
        }
        return state;
    }

    /// <summary>Stops the loop: requests still running or waiting end with <c>abort</c>. Drain first (the server does).</summary>
    public void Dispose()
    {
        lock (_lock) _stopping = true;
        _wake.Release();
        _thread.Join();
        foreach (var (view, routing) in _buckets.Values) { view.Dispose(); routing?.Dispose(); }
        _graphs?.Dispose();
        _prefillRouting?.Dispose();
        _cache.Dispose();
        _wake.Dispose();
    }
}
