namespace Meteora.Runtime;

/// <summary>
/// Where the GPU time of a forward pass goes, phase by phase (issue #17: `bench phases`). The model calls
/// <see cref="Mark"/> at the end of each phase (after the norm, after the q/k/v GEMMs, …); while armed, each call
/// records a CUDA event on the current stream, and the time between consecutive events is the phase named by the
/// later one. Recorded with <c>cudaEventRecordExternal</c> while the stream is capturing (the flag is invalid outside
/// a capture, so eager passes record plainly), the events also become nodes of a CUDA graph captured while armed, so
/// a replayed decode step — where launch overhead is gone and the GPU runs back to back — is timed phase by phase as
/// it really runs. Disarmed (always, outside the benchmark) a mark is one static-field test.
/// Events are created before arming (<paramref name="capacity"/>): no event is created inside a capture.
/// </summary>
internal static unsafe class PhaseMarks
{
    private const uint RecordExternal = 1;   // cudaEventRecordExternal

    private sealed class Api
    {
        public delegate* unmanaged[Cdecl]<IntPtr*, int> Create;
        public delegate* unmanaged[Cdecl]<IntPtr, IntPtr, uint, int> RecordWithFlags;
        public delegate* unmanaged[Cdecl]<IntPtr, int> Synchronize;
        public delegate* unmanaged[Cdecl]<float*, IntPtr, IntPtr, int> Elapsed;
        public delegate* unmanaged[Cdecl]<IntPtr, int> Destroy;
    }

    private static readonly Lazy<Api?> Bound = new(() =>
    {
        var p = new[] { "cudaEventCreate", "cudaEventRecordWithFlags", "cudaEventSynchronize", "cudaEventElapsedTime", "cudaEventDestroy" }
            .Select(CudaRuntime.Export).ToArray();
        if (p.Any(a => a == IntPtr.Zero)) return null;
        return new Api
        {
            Create = (delegate* unmanaged[Cdecl]<IntPtr*, int>)p[0],
            RecordWithFlags = (delegate* unmanaged[Cdecl]<IntPtr, IntPtr, uint, int>)p[1],
            Synchronize = (delegate* unmanaged[Cdecl]<IntPtr, int>)p[2],
            Elapsed = (delegate* unmanaged[Cdecl]<float*, IntPtr, IntPtr, int>)p[3],
            Destroy = (delegate* unmanaged[Cdecl]<IntPtr, int>)p[4],
        };
    });

    private static bool _armed;
    private static int _device;
    private static IntPtr[] _pool = [];
    private static readonly List<(string Phase, IntPtr Event)> Recorded = [];

    /// <summary>Whether CUDA events can be recorded here (a CUDA build of libtorch).</summary>
    public static bool Available => Bound.Value is not null;

    /// <summary>Ends the phase <paramref name="phase"/> here: records an event while armed, otherwise does nothing.</summary>
    public static void Mark(string phase)
    {
        if (!_armed) return;
        if (Recorded.Count >= _pool.Length)
            throw new MeteoraException($"phase marks: more than {_pool.Length} marks in one armed pass (raise the capacity)");
        var ev = _pool[Recorded.Count];
        var api = Bound.Value!;
        var stream = CudaStreams.CurrentHandle(_device);
        int r = api.RecordWithFlags(ev, stream, CudaStreams.IsCapturing(stream) ? RecordExternal : 0u);
        if (r != 0) throw new MeteoraException($"cudaEventRecordWithFlags failed with CUDA error {r}");
        Recorded.Add((phase, ev));
    }

    /// <summary>Arms the marks on CUDA device <paramref name="device"/>, with events for up to <paramref name="capacity"/> marks.</summary>
    public static void Arm(int device, int capacity)
    {
        var api = Bound.Value ?? throw new MeteoraException("phase marks need CUDA events (a CUDA build of libtorch)");
        Release();
        _device = device;
        _pool = new IntPtr[capacity];
        for (int i = 0; i < capacity; i++)
        {
            IntPtr ev;
            int r = api.Create(&ev);
            if (r != 0) throw new MeteoraException($"cudaEventCreate failed with CUDA error {r}");
            _pool[i] = ev;
        }
        _armed = true;
    }

    /// <summary>Stops recording; the marks recorded so far stay readable (and, in a captured graph, are re-recorded by every replay).</summary>
    public static void Disarm() => _armed = false;

    /// <summary>The marks recorded while armed, in order.</summary>
    public static IReadOnlyList<string> Phases => Recorded.Select(m => m.Phase).ToList();

    /// <summary>
    /// Waits for the last mark and returns the milliseconds of each interval between consecutive marks, named by the
    /// later mark (the first mark only starts the clock).
    /// </summary>
    public static List<(string Phase, double Ms)> Read()
    {
        var api = Bound.Value!;
        var result = new List<(string, double)>();
        if (Recorded.Count == 0) return result;
        int r = api.Synchronize(Recorded[^1].Event);
        if (r != 0) throw new MeteoraException($"cudaEventSynchronize failed with CUDA error {r}");
        for (int i = 1; i < Recorded.Count; i++)
        {
            float ms;
            r = api.Elapsed(&ms, Recorded[i - 1].Event, Recorded[i].Event);
            if (r != 0) throw new MeteoraException($"cudaEventElapsedTime failed with CUDA error {r}");
            result.Add((Recorded[i].Phase, ms));
        }
        return result;
    }

    /// <summary>Disarms, forgets the marks and destroys the events (after any graph that records them is gone).</summary>
    public static void Release()
    {
        _armed = false;
        Recorded.Clear();
        if (Bound.Value is { } api) foreach (var ev in _pool) api.Destroy(ev);
        _pool = [];
    }
}
