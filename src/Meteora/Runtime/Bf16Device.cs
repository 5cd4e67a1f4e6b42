namespace Meteora.Runtime;

/// <summary>
/// CUDA C++ shared by our NVRTC kernels (<see cref="CudaKernel"/>): bfloat16 as its 16 raw bits (NVRTC compiles
/// without cuda_bf16.h on the include path), widened exactly to float32 and rounded back to nearest-even as ATen rounds.
/// </summary>
internal static class Bf16Device
{
    /// <summary>Prepended to a kernel's source: <c>bf16</c>, <c>bf2f</c>, <c>f2bf</c>, <c>unpack8</c>.</summary>
    public const string Prelude = """
        typedef unsigned short bf16;
        __device__ __forceinline__ float bf2f(bf16 v) { return __uint_as_float(((unsigned int)v) << 16); }
        __device__ __forceinline__ bf16 f2bf(float f) {
            unsigned int u = __float_as_uint(f);
            if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (bf16)((u >> 16) | 0x40u);   // NaN stays NaN
            u += 0x7fffu + ((u >> 16) & 1u);                                                                 // round to nearest even
            return (bf16)(u >> 16);
        }
        // Eight bfloat16 values packed in 16 bytes (one vector load), widened to float32 (little endian: the low half of
        // each 32-bit word comes first).
        __device__ __forceinline__ void unpack8(uint4 u, float* f) {
            f[0] = __uint_as_float(u.x << 16); f[1] = __uint_as_float(u.x & 0xffff0000u);
            f[2] = __uint_as_float(u.y << 16); f[3] = __uint_as_float(u.y & 0xffff0000u);
            f[4] = __uint_as_float(u.z << 16); f[5] = __uint_as_float(u.z & 0xffff0000u);
            f[6] = __uint_as_float(u.w << 16); f[7] = __uint_as_float(u.w & 0xffff0000u);
        }

        """;
}
