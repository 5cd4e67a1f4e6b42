using Meteora.Llama;
using Meteora.Tests.Moe;
using static TorchSharp.torch;

namespace Meteora.Tests.Llama;

/// <summary>
/// The decode-attention kernels (<see cref="DecodeAttention"/>): they compile for the GPUs we run on, the CPU never takes
/// them, and on CUDA they give SDPA's attention over the attended slots (bench/device-fused.sh compares the whole
/// model's greedy tokens with them on and off).
/// </summary>
public class DecodeAttentionTests
{
    [NvrtcFact]
    public void BothKernelsCompileForHopperAndAmpere()
    {
        CubinAssert.CompilesForHopperAndAmpere(DecodeAttention.Source, "meteora_decode_attention.cu",
            "meteora_decode_attn_partial_bf16", "meteora_decode_attn_combine_bf16");
    }

    [Fact]
    public void OnTheCpuAttentionTakesSdpa()
    {
        Assert.Equal("SDPA (CPU)", DecodeAttention.Describe(CPU));
        using var q = randn(1, 1, 4, 8, dtype: ScalarType.BFloat16);
        using var k = randn(1, 2, 5, 8, dtype: ScalarType.BFloat16);
        Assert.Null(DecodeAttention.Apply(q, k, k, null));
    }

    [CudaFact]
    public void OnCudaItMatchesSdpaOverTheAttendedSlots()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        manual_seed(5);
        var bf = ScalarType.BFloat16;
        // (B, Hkv, capacity, d) caches of which the first 150 slots are filled, row 1 left-padded by 7 slots.
        int B = 2, H = 32, Hkv = 8, d = 128, capacity = 300, filled = 150;
        var kc = randn(B, Hkv, capacity, d, dtype: bf, device: CUDA);
        var vc = randn(B, Hkv, capacity, d, dtype: bf, device: CUDA);
        var q = randn(B, 1, H, d, dtype: bf, device: CUDA);
        var mask = zeros(B, 1, 1, capacity, ScalarType.Bool, device: CUDA);
        mask.narrow(3, 0, filled).fill_(true);
        mask[1].narrow(2, 0, 7).fill_(false);
        var ours = DecodeAttention.Apply(q, kc, vc, mask) ?? throw new Xunit.Sdk.XunitException("the decode kernels did not run on CUDA");
        // Reference in float32: repeat the KV heads, mask, softmax.
        int rep = H / Hkv;
        var kf = kc.to(ScalarType.Float32).repeat_interleave(rep, 1);                     // (B, H, S, d)
        var vf = vc.to(ScalarType.Float32).repeat_interleave(rep, 1);
        var qf = q.to(ScalarType.Float32).transpose(1, 2);                                 // (B, H, 1, d)
        var reference = nn.functional.scaled_dot_product_attention(qf, kf, vf, mask).transpose(1, 2).reshape(B, 1, H * d);
        var diff = (ours.to(ScalarType.Float32) - reference).abs();
        var bound = reference.abs() * (1.0 / 128) + 1e-3;                                   // one bfloat16 rounding of the output
        Assert.True(diff.le(bound).all().item<bool>(), $"max |diff| {diff.max().item<float>()}");
        // Without a mask, over a view of the filled slots.
        var k2 = kc.narrow(2, 0, filled); var v2 = vc.narrow(2, 0, filled);
        var ours2 = DecodeAttention.Apply(q, k2, v2, null)!;
        var ref2 = nn.functional.scaled_dot_product_attention(qf, kf.narrow(2, 0, filled), vf.narrow(2, 0, filled)).transpose(1, 2).reshape(B, 1, H * d);
        Assert.True((ours2.to(ScalarType.Float32) - ref2).abs().le(ref2.abs() * (1.0 / 128) + 1e-3).all().item<bool>());
    }
}
