using Meteora.Runtime;
using static TorchSharp.torch;

namespace Meteora.Tests.Runtime;

public class NativeExportsTests
{
    [Fact]
    public void BindsFromTheFirstLibraryThatExportsEverySymbolAndOnlyThen()
    {
        using var _ = zeros(1);   // libtorch is loaded by now
        string[] symbols = ["_ZN2at13globalContextEv", "_ZN2at7Context14setSDPUseCuDNNEb"];
        var bound = NativeExports.Bind(["/nonexistent/libtorch_cpu.so", .. NativeExports.TorchCpu], symbols);
        Assert.NotNull(bound);
        Assert.Equal(NativeExports.TorchCpu[0], bound.Value.Library);
        Assert.Equal(2, bound.Value.Addresses.Length);
        Assert.All(bound.Value.Addresses, a => Assert.NotEqual(IntPtr.Zero, a));
        Assert.NotEqual(bound.Value.Addresses[0], bound.Value.Addresses[1]);
        // One missing symbol makes the whole library unusable, and nothing else offers them.
        Assert.Null(NativeExports.Bind(NativeExports.TorchCpu, [.. symbols, "meteora_no_such_symbol"]));
        Assert.Null(NativeExports.Bind(["/nonexistent/libtorch_cpu.so"], symbols));
    }
}
