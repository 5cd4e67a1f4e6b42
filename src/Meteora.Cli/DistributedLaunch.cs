using System.CommandLine;
using Meteora.Distributed;
using Meteora.Runtime;
using static TorchSharp.torch;

namespace Meteora.Cli;

/// <summary>
/// Data-parallel training under torchrun (<c>torchrun --standalone --nproc-per-node N --no-python meteora train-gate
/// …</c>, docs/DISTRIBUTED.md): with the launcher's WORLD_SIZE above 1, every rank joins an NCCL group on its own GPU
/// (cuda:LOCAL_RANK). Without the launcher's variables (or with one rank) nothing changes.
/// </summary>
internal static class DistributedLaunch
{
    /// <summary>The launcher's layout when this process is one of several ranks; else null.</summary>
    public static LaunchEnvironment? Ranks() => LaunchEnvironment.Read() is { WorldSize: > 1 } l ? l : null;

    /// <summary>The commands that run data-parallel under torchrun (by their path below the root command).</summary>
    private static readonly string[] DataParallelCommands = ["train-gate", "train-lora", "bench train-gate", "bench train-lora", "bench all-reduce"];

    /// <summary>
    /// Under a launcher with several ranks, refuses every command that would only run W independent copies of itself
    /// (writing the same outputs at once): a one-line error naming the ones that run data-parallel.
    /// </summary>
    public static void CheckCommand(ParseResult p)
    {
        if (Ranks() is not { } launch) return;
        var names = new List<string>();
        for (var c = p.CommandResult; c is not null; c = c.Parent as System.CommandLine.Parsing.CommandResult)
            if (c.Parent is not null) names.Insert(0, c.Command.Name);   // the root command has no parent
        string path = string.Join(' ', names);
        if (!DataParallelCommands.Contains(path))
            throw new MeteoraException($"WORLD_SIZE={launch.WorldSize}: '{path}' runs in one process; launch it without torchrun (data-parallel: {string.Join(", ", DataParallelCommands)})");
    }

    /// <summary>
    /// The GPU of this rank, cuda:LOCAL_RANK, made the main thread's current CUDA device before NCCL or anything
    /// else allocates on it.
    /// </summary>
    public static Device RankDevice(Device requested, LaunchEnvironment launch, string given)
    {
        if (requested.type != TorchSharp.DeviceType.CUDA)
            throw new MeteoraException($"WORLD_SIZE={launch.WorldSize}: data-parallel training runs one process per GPU over NCCL; add --device cuda");
        if (given.Contains(':'))
            throw new MeteoraException($"--device {given}: under torchrun every rank takes its own GPU (cuda:LOCAL_RANK); give --device cuda");
        var device = new Device(TorchSharp.DeviceType.CUDA, launch.LocalRank);
        if (device.index >= cuda.device_count())
            throw new MeteoraException($"LOCAL_RANK={launch.LocalRank}: this machine has only {cuda.device_count()} CUDA device(s) (start at most that many ranks)");
        CudaRuntime.SetDevice(device.index);
        return device;
    }

    /// <summary>
    /// For an exception filter around a rank's work: aborts the NCCL communicator (without waiting for the other ranks)
    /// and returns false, so the exception goes on to be reported.
    /// </summary>
    public static bool AbortOnError(ICommunicator? ranks)
    {
        (ranks as NcclCommunicator)?.Abort();
        return false;
    }

    /// <summary>Joins the NCCL group when launched as one of several ranks (the unique id passes through <paramref name="runFolder"/>); else null.</summary>
    public static ICommunicator? Join(CliContext ctx, string runFolder)
    {
        if (Ranks() is not { } launch) return null;
        return NcclCommunicator.Join(launch, ctx.Device, runFolder, line => ctx.Err.WriteLine(line));
    }
}
