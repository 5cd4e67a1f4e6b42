using Xunit;

namespace Meteora.Tests;

/// <summary>A test of behaviour without a CUDA device; skipped, with its reason, on machines that have one.</summary>
public sealed class NoCudaFactAttribute : FactAttribute
{
    public NoCudaFactAttribute()
    {
        if (CudaFactAttribute.Available) Skip = "needs a machine without a CUDA device (this one has one; the CUDA case is covered by the [CudaFact] tests)";
    }
}
