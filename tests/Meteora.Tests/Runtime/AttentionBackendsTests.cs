using Meteora.Runtime;
using static TorchSharp.torch;

namespace Meteora.Tests.Runtime;

public class AttentionBackendsTests
{
    [Fact]
    public void CuDnnAttentionSwitchIsFoundInLibtorchAndReadsBackOff()
    {
        using var _ = zeros(1);   // libtorch is loaded
        // True only when the setter was found and libtorch's getter reads the switch back as off.
        Assert.True(AttentionBackends.DisableCuDnnAttention());
        Assert.True(AttentionBackends.DisableCuDnnAttention());
        using var q = ones(1, 2, 3, 4);
        using var o = nn.functional.scaled_dot_product_attention(q, q, q);   // SDPA still works afterwards
        Assert.Equal(new long[] { 1, 2, 3, 4 }, o.shape);
    }
}
