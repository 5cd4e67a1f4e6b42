using static TorchSharp.torch;

namespace Meteora.Tests;

/// <summary>Tensor comparisons with the fixture tolerances.</summary>
public static class TensorAssert
{
    /// <summary>Asserts equal shapes and max |a - b| ≤ <paramref name="atol"/>.</summary>
    public static void Close(Tensor expected, Tensor actual, double atol, string what = "")
    {
        Assert.Equal(expected.shape, actual.shape);
        double diff = (expected.to(ScalarType.Float32).cpu() - actual.to(ScalarType.Float32).cpu()).abs().max().item<float>();
        Assert.True(diff <= atol, $"{what}: max abs difference {diff:g4} > {atol:g4}");
    }

    /// <summary>‖a − b‖ / ‖b‖ ≤ <paramref name="rtol"/>.</summary>
    public static void RelativeClose(Tensor expected, Tensor actual, double rtol, string what = "")
    {
        Assert.Equal(expected.shape, actual.shape);
        var e = expected.to(ScalarType.Float64).cpu();
        double rel = (e - actual.to(ScalarType.Float64).cpu()).norm().item<double>() / e.norm().item<double>();
        Assert.True(rel <= rtol, $"{what}: relative difference {rel:g4} > {rtol:g4}");
    }
}
