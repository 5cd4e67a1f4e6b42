using TorchSharp;

namespace Meteora.Tests;

/// <summary>A fact that runs only where libtorch sees a CUDA device; elsewhere it is reported as skipped, with the reason.</summary>
public sealed class CudaFactAttribute : FactAttribute
{
    public static readonly bool Available = Probe();

    public CudaFactAttribute()
    {
        if (!Available) Skip = "needs a CUDA GPU: this machine's libtorch has no CUDA device (run on the device machine, see README 'GPU')";
    }

    private static bool Probe()
    {
        try
        {
            torch.InitializeDeviceType(DeviceType.CUDA);
            return torch.cuda.is_available();
        }
        catch (Exception)
        {
            return false;
        }
    }
}
