namespace Meteora.Distributed;

/// <summary>
/// The rank layout torchrun (or any elastic launcher) hands each process: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR,
/// MASTER_PORT and TORCHELASTIC_RUN_ID. Absent (no WORLD_SIZE): a single-process run, exactly as without a launcher.
/// </summary>
public sealed record LaunchEnvironment(int Rank, int LocalRank, int WorldSize, string? MasterAddress, int? MasterPort, string? RunId)
{
    /// <summary>The launcher's variables from <paramref name="get"/> (default: the process environment), or null when there are none.</summary>
    public static LaunchEnvironment? Read(Func<string, string?>? get = null)
    {
        get ??= Environment.GetEnvironmentVariable;
        if (string.IsNullOrEmpty(get("WORLD_SIZE"))) return null;
        int world = Int("WORLD_SIZE", 1);
        int rank = Int("RANK", 0), local = Int("LOCAL_RANK", 0);
        if (rank >= world) throw new MeteoraException($"RANK={rank} is not below WORLD_SIZE={world}");
        int? port = string.IsNullOrEmpty(get("MASTER_PORT")) ? null : Int("MASTER_PORT", 1);
        if (port is > 65535) throw new MeteoraException($"MASTER_PORT={port} is not a TCP port");
        return new LaunchEnvironment(rank, local, world, get("MASTER_ADDR"), port, get("TORCHELASTIC_RUN_ID"));

        int Int(string name, int min)
        {
            string? text = get(name);
            if (string.IsNullOrEmpty(text)) throw new MeteoraException($"{name} is not set (WORLD_SIZE is: a launcher sets both)");
            if (!int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int v) || v < min)
                throw new MeteoraException($"{name}={text} is not an integer ≥ {min}");
            return v;
        }
    }
}
