using Meteora.Runtime;

namespace Meteora.Tests.Runtime;

public class TorchRuntimeTests
{
    /// <summary>
    /// TorchSharp's failure to find libtorch (a type initializer exception for TorchSharp.torch whose inner message is
    /// a page of text) becomes one line naming the missing package and both remedies; other exceptions are not mapped.
    /// The end-to-end case, the installed tool with no libtorch anywhere, is in scripts/check-packages.sh.
    /// </summary>
    [Fact]
    public void AMissingLibtorchIsOneLineNamingTheBackend()
    {
        var inner = new NotSupportedException("This application or script uses TorchSharp but doesn't contain a reference to libtorch-cpu-linux-x64, Version=2.10.0.0.\n\n" +
            "Consider referencing one of the combination packages TorchSharp-cpu, …\n\nTrace from LoadNativeBackend:\n\n  Step 1 …");
        string? message = TorchRuntime.MissingBackendMessage(new TypeInitializationException("TorchSharp.torch", inner));
        Assert.NotNull(message);
        Assert.DoesNotContain('\n', message);
        Assert.Contains("libtorch-cpu-linux-x64, Version=2.10.0.0", message);
        Assert.Contains("TorchSharp-cpu", message);
        Assert.Contains("LD_LIBRARY_PATH", message);
        Assert.DoesNotContain("Trace from", message);

        Assert.Null(TorchRuntime.MissingBackendMessage(new TypeInitializationException("Meteora.Other", inner)));
        Assert.Null(TorchRuntime.MissingBackendMessage(inner));
    }

    /// <summary>Where libtorch is present (every test machine) the check passes, and passes again (it is cached).</summary>
    [Fact]
    public void EnsureBackendPassesWhereLibtorchLoads()
    {
        TorchRuntime.EnsureBackend();
        TorchRuntime.EnsureBackend();
        Assert.Equal("cpu", TorchRuntime.ParseDevice("cpu").type.ToString().ToLowerInvariant());
    }
}
