using System.Diagnostics;
using System.Runtime.InteropServices;
using Meteora.IO;
using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Distributed;

/// <summary>
/// <see cref="ICommunicator"/> over NCCL, one process per GPU (issue #16, DESIGN.md "Distributed"). NCCL is bound by
/// P/Invoke from <c>libnccl.so.2</c> — the copy PyTorch's CUDA library already loaded, or the file named by
/// <c>METEORA_NCCL_LIBRARY</c> — and runs in place on the tensors' device memory on libtorch's current CUDA stream,
/// so its kernels are ordered with ATen's. Rank 0 creates the unique id and hands it to the others through an
/// atomic file in the run's folder.
/// <para>
/// A watchdog thread stops a job that would otherwise hang: it polls NCCL's asynchronous error and a CUDA event
/// recorded after every collective; a collective that has not completed within <see cref="Timeout"/> (a rank died
/// or hung) or an asynchronous error aborts the communicator, writes one line naming the rank, the operation and
/// the cause to stderr and exits the process with code 1 — torchrun then ends the job (or restarts it from the
/// checkpoint with <c>--max-restarts</c>).
/// </para>
/// </summary>
public sealed unsafe class NcclCommunicator : ICommunicator
{
    /// <summary>Environment variable naming the NCCL library to load instead of the one next to PyTorch.</summary>
    public const string LibraryVariable = "METEORA_NCCL_LIBRARY";
    /// <summary>Environment variable with the collective timeout in seconds (default 300).</summary>
    public const string TimeoutVariable = "METEORA_NCCL_TIMEOUT_S";

    private readonly Api _api;
    private readonly IntPtr _comm;
    private readonly Device _device;
    private readonly Thread _watchdog;
    private readonly Queue<(IntPtr Event, long Started, string What)> _pending = new();
    private readonly object _lock = new();
    private volatile bool _closing;
    private long _collectives;

    /// <summary>This rank.</summary>
    public int Rank { get; }
    /// <summary>The number of ranks.</summary>
    public int WorldSize { get; }
    /// <summary>How long a collective (or joining the group) may take before the watchdog aborts the job.</summary>
    public TimeSpan Timeout { get; }
    /// <summary>The NCCL library and version in use, e.g. "libnccl.so.2 2.27.3".</summary>
    public string Version { get; }

    private NcclCommunicator(Api api, IntPtr comm, int rank, int world, Device device, TimeSpan timeout, string version)
    {
        _api = api; _comm = comm; Rank = rank; WorldSize = world; _device = device; Timeout = timeout; Version = version;
        _watchdog = new Thread(Watch) { IsBackground = true, Name = $"nccl-watchdog-{rank}" };
        _watchdog.Start();
    }

    /// <summary>
    /// Joins the job described by <paramref name="launch"/> on <paramref name="device"/> (cuda:LOCAL_RANK, already
    /// the current CUDA device). <paramref name="runFolder"/> carries the unique id from rank 0 to the others.
    /// </summary>
    public static NcclCommunicator Join(LaunchEnvironment launch, Device device, string runFolder, Action<string>? log = null)
    {
        if (device.type != DeviceType.CUDA) throw new MeteoraException($"NCCL needs a CUDA device (this rank has {device})");
        CudaRuntime.SetDevice(IndexOf(device));   // NCCL binds the calling thread's current device
        var timeout = TimeSpan.FromSeconds(ReadTimeout());
        // NVLink SHARP (multicast) objects cannot be created on the lent machines; NCCL reads this at init.
        NativeEnvironment.Set("NCCL_NVLS_ENABLE", "0");
        var api = Api.Load();
        int v = 0;
        api.Check(api.GetVersion(&v), "ncclGetVersion");
        string version = $"{api.Library} {v / 10000}.{v / 100 % 100}.{v % 100}";
        if (launch.Rank == 0) log?.Invoke($"NCCL {version}: {launch.WorldSize} ranks, collective timeout {timeout.TotalSeconds:0} s");

        Directory.CreateDirectory(runFolder);
        string idFile = Path.Combine(runFolder, $".nccl-id-{launch.RunId ?? "run"}-{Environment.GetEnvironmentVariable("TORCHELASTIC_RESTART_COUNT") ?? "0"}-{launch.MasterPort ?? 0}");
        var id = default(UniqueId);
        if (launch.Rank == 0)
        {
            api.Check(api.GetUniqueId(&id), "ncclGetUniqueId");
            AtomicFile.WriteAllBytes(idFile, new ReadOnlySpan<byte>(&id, sizeof(UniqueId)).ToArray());
        }
        else
        {
            // A file older than the launcher is a crashed earlier job's (same run id and port): wait for rank 0's.
            var started = LauncherStart();
            var clock = Stopwatch.StartNew();
            while (!File.Exists(idFile) || File.GetLastWriteTimeUtc(idFile) < started)
            {
                if (clock.Elapsed > timeout)
                    throw new MeteoraException($"rank {launch.Rank}: rank 0 did not write the NCCL id {idFile} within {timeout.TotalSeconds:0} s (did it start, and do all ranks share this output folder?)");
                Thread.Sleep(50);
            }
            var bytes = File.ReadAllBytes(idFile);
            if (bytes.Length != sizeof(UniqueId)) throw new MeteoraException($"{idFile}: {bytes.Length} bytes, an NCCL id has {sizeof(UniqueId)}");
            bytes.CopyTo(new Span<byte>(&id, sizeof(UniqueId)));
        }

        // ncclCommInitRank blocks until every rank joined: a rank that never comes is caught by the same deadline.
        IntPtr comm = IntPtr.Zero;
        using (var joining = new Deadline(timeout, () => $"rank {launch.Rank}: not every rank joined the NCCL group within {timeout.TotalSeconds:0} s"))
            api.Check(api.CommInitRank(&comm, launch.WorldSize, id, launch.Rank), "ncclCommInitRank");
        var communicator = new NcclCommunicator(api, comm, launch.Rank, launch.WorldSize, device, timeout, version);
        communicator.Barrier();
        if (launch.Rank == 0) File.Delete(idFile);   // every rank has read it
        return communicator;
    }

    /// <inheritdoc/>
    public void AllReduceSum(Tensor tensor)
    {
        var (data, count, type) = Buffer(tensor, "all-reduce");
        _api.Check(_api.AllReduce(data, data, count, type, 0 /* ncclSum */, _comm, Stream), "ncclAllReduce");
        Enqueued("all-reduce");
    }

    /// <inheritdoc/>
    public void Broadcast(Tensor tensor, int root = 0)
    {
        if (root < 0 || root >= WorldSize) throw new MeteoraException($"broadcast: root {root} is not in 0…{WorldSize - 1}");
        var (data, count, type) = Buffer(tensor, "broadcast");
        _api.Check(_api.Broadcast(data, data, count, type, root, _comm, Stream), "ncclBroadcast");
        Enqueued("broadcast");
    }

    /// <summary>An all-reduce of one number, waited for: returns once every rank has called it.</summary>
    public void Barrier()
    {
        using var one = ones(1, ScalarType.Float32, _device);
        AllReduceSum(one);
        _ = one.cpu().item<float>();   // waits for the stream, so for every rank
    }

    private IntPtr Stream => CudaStreams.Available ? CudaStreams.CurrentHandle(IndexOf(_device)) : IntPtr.Zero;

    /// <summary>The CUDA device ordinal of <paramref name="device"/> ("cuda" without an index is device 0).</summary>
    private static int IndexOf(Device device) => device.index < 0 ? 0 : device.index;

    private (IntPtr Data, nuint Count, int Type) Buffer(Tensor t, string op)
    {
        if (t.device.type != DeviceType.CUDA) throw new MeteoraException($"NCCL {op}: the tensor is on {t.device}, not a GPU");
        if (!t.is_contiguous()) throw new MeteoraException($"NCCL {op}: the tensor must be contiguous");
        int type = t.dtype switch
        {
            ScalarType.Int8 => 0, ScalarType.Byte => 1, ScalarType.Int32 => 2, ScalarType.Int64 => 4, ScalarType.Float16 => 6,
            ScalarType.Float32 => 7, ScalarType.Float64 => 8, ScalarType.BFloat16 => 9,
            _ => throw new MeteoraException($"NCCL {op}: no NCCL type for {t.dtype}"),
        };
        return (DeviceMemory.Address(t), (nuint)t.numel(), type);
    }

    /// <summary>Records an event after the collective just enqueued, for the watchdog to time.</summary>
    private void Enqueued(string what)
    {
        var ev = CudaEvents.Create();
        CudaEvents.Record(ev, Stream);
        lock (_lock) _pending.Enqueue((ev, Stopwatch.GetTimestamp(), $"{what} #{++_collectives}"));
    }

    private void Watch()
    {
        // CUDA's current device is per thread: without this the event calls below would open a context on GPU 0
        // in every rank.
        CudaRuntime.SetDevice(IndexOf(_device));
        while (!_closing)
        {
            Thread.Sleep(200);
            int async = 0;
            if (_api.GetAsyncError(_comm, &async) == 0 && async != 0 && async != 7 /* ncclInProgress */)
                Fail($"rank {Rank}: NCCL reported an asynchronous error: {_api.ErrorText(async)} ({_api.LastError(_comm)})");
            lock (_lock)
            {
                while (_pending.TryPeek(out var p))
                {
                    if (CudaEvents.Done(p.Event)) { CudaEvents.Destroy(p.Event); _pending.Dequeue(); continue; }
                    if (Stopwatch.GetElapsedTime(p.Started) > Timeout)
                        Fail($"rank {Rank}: NCCL {p.What} did not complete within {Timeout.TotalSeconds:0} s (another rank died, hung or called another collective)");
                    break;
                }
            }
        }
    }

    /// <summary>Aborts the communicator (its kernels return) and ends the process: the caller is stuck in CUDA.</summary>
    private void Fail(string message)
    {
        _closing = true;
        Console.Error.WriteLine($"error: {message}; aborting the NCCL communicator");
        Console.Error.Flush();
        AbortCommunicator();
        NativeEnvironment.ExitNow(1);
    }

    /// <summary>Waits for the queued collectives, then destroys the communicator.</summary>
    public void Dispose()
    {
        if (_closing) return;
        // Waiting for the queued collectives and destroying the communicator both need the other ranks; if one of
        // them is gone they would block forever, so the same deadline as a collective's applies.
        using var deadline = new Deadline(Timeout, () => $"rank {Rank}: closing the NCCL communicator took longer than {Timeout.TotalSeconds:0} s (another rank is gone)");
        try { cuda.synchronize(_device); } catch (Exception) { }
        _closing = true;
        _watchdog.Join();
        lock (_lock) while (_pending.TryDequeue(out var p)) CudaEvents.Destroy(p.Event);
        _api.CommDestroy(_comm);
    }

    /// <summary>
    /// Ends this rank's part at once, for a rank that fails: the other ranks may wait in a collective this one will
    /// never call, so nothing is waited for (their own watchdogs end them). <see cref="Dispose"/> does nothing after.
    /// </summary>
    public void Abort()
    {
        if (_closing) return;
        _closing = true;
        AbortCommunicator();
    }

    /// <summary>ncclCommAbort, which has been known to hang itself: the process does not wait for it longer than 10 s.</summary>
    private void AbortCommunicator()
    {
        using var hardStop = new Deadline(TimeSpan.FromSeconds(10), () => $"rank {Rank}: ncclCommAbort did not return within 10 s");
        _api.CommAbort(_comm);
    }

    /// <summary>
    /// When the launcher (this process's parent: torchrun's agent, which starts every rank) started; without a readable
    /// parent, this process's start less a minute. Any id file written for this job is younger.
    /// </summary>
    internal static DateTime LauncherStart()
    {
        var self = Process.GetCurrentProcess().StartTime.ToUniversalTime();
        try
        {
            // /proc/self/stat: "pid (comm) state ppid …"; comm may hold spaces, so read after its closing parenthesis.
            string stat = File.ReadAllText("/proc/self/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            using var parent = Process.GetProcessById(int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture));
            var started = parent.StartTime.ToUniversalTime();
            return started <= self ? started : self.AddMinutes(-1);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or FormatException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            return self.AddMinutes(-1);
        }
    }

    private static double ReadTimeout()
    {
        string? text = Environment.GetEnvironmentVariable(TimeoutVariable);
        if (string.IsNullOrEmpty(text)) return 300;
        if (!double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double s) || !(s >= 1 && s <= 86_400))
            throw new MeteoraException($"{TimeoutVariable}={text} is not a number of seconds in 1…86400");
        return s;
    }

    /// <summary>ncclUniqueId: 128 opaque bytes, passed by value.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 128)]
    private struct UniqueId { private fixed byte _bytes[128]; }

    /// <summary>Ends the process with a one-line cause if <see cref="Dispose"/> is not called within the deadline.</summary>
    private sealed class Deadline : IDisposable
    {
        private readonly Timer _timer;
        public Deadline(TimeSpan after, Func<string> message) =>
            _timer = new Timer(_ => { Console.Error.WriteLine($"error: {message()}"); Console.Error.Flush(); NativeEnvironment.ExitNow(1); }, null, after, System.Threading.Timeout.InfiniteTimeSpan);
        public void Dispose() => _timer.Dispose();
    }

    /// <summary>The NCCL entry points, bound from the first library that exports them all.</summary>
    private sealed class Api
    {
        public required string Library { get; init; }
        public delegate* unmanaged[Cdecl]<int*, int> GetVersion;
        public delegate* unmanaged[Cdecl]<UniqueId*, int> GetUniqueId;
        public delegate* unmanaged[Cdecl]<IntPtr*, int, UniqueId, int, int> CommInitRank;
        public delegate* unmanaged[Cdecl]<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int> AllReduce;
        public delegate* unmanaged[Cdecl]<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int> Broadcast;
        public delegate* unmanaged[Cdecl]<IntPtr, int*, int> GetAsyncError;
        public delegate* unmanaged[Cdecl]<IntPtr, int> CommAbort;
        public delegate* unmanaged[Cdecl]<IntPtr, int> CommDestroy;
        public delegate* unmanaged[Cdecl]<int, IntPtr> GetErrorString;
        public delegate* unmanaged[Cdecl]<IntPtr, IntPtr> GetLastError;

        private static readonly string[] Symbols =
        [
            "ncclGetVersion", "ncclGetUniqueId", "ncclCommInitRank", "ncclAllReduce", "ncclBroadcast", "ncclCommGetAsyncError",
            "ncclCommAbort", "ncclCommDestroy", "ncclGetErrorString", "ncclGetLastError",
        ];

        public static Api Load()
        {
            string? given = Environment.GetEnvironmentVariable(LibraryVariable);
            var candidates = !string.IsNullOrEmpty(given) ? [given] : Candidates();
            if (NativeExports.Bind(candidates, Symbols) is not { Addresses: var p, Library: var lib })
                throw new MeteoraException(!string.IsNullOrEmpty(given)
                    ? $"{LibraryVariable}={given}: not an NCCL library this process can load (or it lacks {string.Join(", ", Symbols)})"
                    : $"NCCL: libnccl.so.2 not found (looked in: {string.Join(", ", candidates)}); install PyTorch's NCCL or set {LibraryVariable}");
            return new Api
            {
                Library = lib,
                GetVersion = (delegate* unmanaged[Cdecl]<int*, int>)p[0],
                GetUniqueId = (delegate* unmanaged[Cdecl]<UniqueId*, int>)p[1],
                CommInitRank = (delegate* unmanaged[Cdecl]<IntPtr*, int, UniqueId, int, int>)p[2],
                AllReduce = (delegate* unmanaged[Cdecl]<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int>)p[3],
                Broadcast = (delegate* unmanaged[Cdecl]<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int>)p[4],
                GetAsyncError = (delegate* unmanaged[Cdecl]<IntPtr, int*, int>)p[5],
                CommAbort = (delegate* unmanaged[Cdecl]<IntPtr, int>)p[6],
                CommDestroy = (delegate* unmanaged[Cdecl]<IntPtr, int>)p[7],
                GetErrorString = (delegate* unmanaged[Cdecl]<int, IntPtr>)p[8],
                GetLastError = (delegate* unmanaged[Cdecl]<IntPtr, IntPtr>)p[9],
            };
        }

        /// <summary>
        /// libnccl.so.2 as the loader finds it (PyTorch's CUDA library already loaded it), any copy already mapped
        /// into the process, and the one PyTorch wheels ship beside torch (site-packages/nvidia/nccl/lib).
        /// </summary>
        private static string[] Candidates()
        {
            var list = new List<string> { "libnccl.so.2" };
            try
            {
                foreach (var line in File.ReadLines("/proc/self/maps"))
                {
                    int at = line.IndexOf('/');
                    if (at < 0) continue;
                    string path = line[at..];
                    if (Path.GetFileName(path).StartsWith("libnccl.so")) list.Add(path);
                    else if (Path.GetFileName(path) == "libtorch_cuda.so")
                        list.Add(Path.GetFullPath(Path.Combine(Path.GetDirectoryName(path)!, "..", "..", "nvidia", "nccl", "lib", "libnccl.so.2")));
                }
            }
            catch (IOException) { }
            return list.Distinct().ToArray();
        }

        public void Check(int result, string call)
        {
            if (result != 0) throw new MeteoraException($"{call} failed: {ErrorText(result)}");
        }

        public string ErrorText(int result) => Marshal.PtrToStringUTF8(GetErrorString(result)) ?? $"NCCL error {result}";

        public string LastError(IntPtr comm) => Marshal.PtrToStringUTF8(GetLastError(comm)) is { Length: > 0 } s ? s : "no detail";
    }
}
