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

    /// <summary>
    /// The GPU of this rank: the --device's index if one was given (cuda:N), else LOCAL_RANK; made the main thread's
    /// current CUDA device before NCCL or anything else allocates on it.
    /// </summary>
    public static Device RankDevice(Device requested, LaunchEnvironment launch, bool indexGiven)
    {
        if (requested.type != TorchSharp.DeviceType.CUDA)
            throw new MeteoraException($"WORLD_SIZE={launch.WorldSize}: data-parallel training runs one process per GPU over NCCL; add --device cuda");
        var device = indexGiven ? requested : new Device(TorchSharp.DeviceType.CUDA, launch.LocalRank);
        if (device.index >= cuda.device_count())
            throw new MeteoraException($"LOCAL_RANK={launch.LocalRank}: this machine has only {cuda.device_count()} CUDA device(s) (start at most that many ranks)");
        CudaEvents.SetDevice(device.index);
        return device;
    }

    /// <summary>Joins the NCCL group when launched as one of several ranks (the unique id passes through <paramref name="runFolder"/>); else null.</summary>
    public static ICommunicator? Join(CliContext ctx, string runFolder)
    {
        if (Ranks() is not { } launch) return null;
        return NcclCommunicator.Join(launch, ctx.Device, runFolder, line => ctx.Err.WriteLine(line));
    }
}
