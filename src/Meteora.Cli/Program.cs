using Meteora.Runtime;

namespace Meteora.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        NativeHeap.KeepFreedMemory();   // before libtorch allocates anything (see NativeHeap)
        return CliApp.Run(args, Console.Out, Console.Error);
    }
}
