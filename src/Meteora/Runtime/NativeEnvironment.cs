using System.Runtime.InteropServices;

namespace Meteora.Runtime;

/// <summary>
/// The process's C environment and exit, for native libraries: .NET's Environment.SetEnvironmentVariable does not
/// change what C's getenv sees on Linux, and a thread stuck in a CUDA call would hold up a managed exit.
/// </summary>
internal static class NativeEnvironment
{
    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv(string name, string value, int overwrite);

    [DllImport("libc", EntryPoint = "_exit")]
    private static extern void Exit(int code);

    /// <summary>Sets <paramref name="name"/> for native code (getenv) and for .NET, unless already set.</summary>
    public static void Set(string name, string value)
    {
        if (Environment.GetEnvironmentVariable(name) is not null) return;
        Environment.SetEnvironmentVariable(name, value);
        if (OperatingSystem.IsLinux()) SetEnv(name, value, 0);
    }

    /// <summary>Ends the process at once with <paramref name="code"/> (no finalizers, no waiting for other threads).</summary>
    public static void ExitNow(int code)
    {
        if (OperatingSystem.IsLinux()) Exit(code);
        Environment.Exit(code);
    }
}
