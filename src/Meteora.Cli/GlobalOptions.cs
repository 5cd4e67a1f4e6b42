using System.CommandLine;

namespace Meteora.Cli;

/// <summary>Options every command accepts (DESIGN.md, command-line contract).</summary>
public static class GlobalOptions
{
    public static readonly Option<string> Device = new("--device")
    {
        Description = "cpu, cuda or cuda:N",
        DefaultValueFactory = _ => "cpu",
        Recursive = true,
    };

    public static readonly Option<string?> DType = new("--dtype")
    {
        Description = "float32, bfloat16 or float16 (default: float32 on CPU, bfloat16 on CUDA)",
        Recursive = true,
    };
}
