using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Llama;

/// <summary>
/// Projections of a few tokens (decode) as one NVRTC matrix-vector kernel that streams the weight at the memory's
/// pace (issue #17): at one to <see cref="MaxTokens"/> tokens a projection reads its whole weight to do 2·N FLOPs
/// per element, so it is a memory copy, and cuBLAS's GEMM kernels reach 57–77 % of the H200's bandwidth on the
/// 8B shapes (docs/BENCHMARKS.md "Where the time goes"). Here each warp owns one output row: its lanes issue
/// <c>UNROLL</c> 16-byte loads of the row at once, multiply them with the tokens' inputs (small, cached) in
/// float32, reduce across the warp and round once to bfloat16, as cuBLAS does (the float32 summation order differs,
/// so a result can differ from the GEMM's in the last bfloat16 bit).
/// <para>
/// The same launch also serves MeteoRA (<c>Moe.SelectiveMixKernel</c>): besides the base rows W it takes the
/// float32 gate G (L, in) and the stacked adapter rows A_all (ΣR, in) and writes <c>h = x [G; A_all]ᵀ</c> (N, L + ΣR)
/// in float32, so a MeteoRA projection reads x once for its base output, exact gate logits and rank values.
/// Gate rows go first (their float32 rows take twice the reads).
/// </para>
/// <c>METEORA_DECODE_GEMV=off</c> (or <see cref="Enabled"/> = false) keeps cuBLAS.
/// </summary>
internal static unsafe class DecodeGemv
{
    /// <summary>The most tokens (rows of the input) the kernel takes; from one more on, cuBLAS's GEMM.</summary>
    public const int MaxTokens = 8;
    private const int WarpsPerBlock = 8;

    internal const string Source = Bf16Device.Prelude + """
        #define TOK 8
        #define UNROLL 8

        __device__ __forceinline__ void unpack8(uint4 u, float* f)
        {
            f[0] = __uint_as_float(u.x << 16); f[1] = __uint_as_float(u.x & 0xffff0000u);
            f[2] = __uint_as_float(u.y << 16); f[3] = __uint_as_float(u.y & 0xffff0000u);
            f[4] = __uint_as_float(u.z << 16); f[5] = __uint_as_float(u.z & 0xffff0000u);
            f[6] = __uint_as_float(u.w << 16); f[7] = __uint_as_float(u.w & 0xffff0000u);
        }

        // acc[t] += x_t[c : c+8] · f[0:8] for the N tokens (x rows xs apart, cached: every warp reads them).
        __device__ __forceinline__ void dot8(const bf16* x, long long xs, int N, int c, const float* f, float* acc)
        {
            #pragma unroll
            for (int t = 0; t < TOK; t++) {
                if (t < N) {
                    float xf[8];
                    unpack8(*(const uint4*)(x + (long long)t * xs + c), xf);
                    #pragma unroll
                    for (int j = 0; j < 8; j++) acc[t] = fmaf(f[j], xf[j], acc[t]);
                }
            }
        }

        // One warp per row of [G (L, float32); W (Rw, bfloat16, rows ldw apart); A (R, bfloat16)], all rows `in` wide
        // (a multiple of 8, rows 16-byte aligned). x (N ≤ TOK, in) bfloat16, rows xs apart.
        // y (N, Rw) bfloat16, rows ys apart: x Wᵀ. h (N, L + R) float32: x Gᵀ then x Aᵀ (unused when L + R = 0).
        extern "C" __global__ void meteora_gemv_bf16(const bf16* x, long long xs, int N, int in,
                                                     const float* G, int L, const bf16* W, long long ldw, int Rw,
                                                     const bf16* A, int R, bf16* y, long long ys, float* h)
        {
            int row = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
            if (row >= L + Rw + R) return;
            float acc[TOK];
            #pragma unroll
            for (int t = 0; t < TOK; t++) acc[t] = 0.f;
            if (row < L) {
                // A float32 gate row: UNROLL/2 chunks of 8 per pass (two 16-byte loads each), all issued at once.
                const float* g = G + (long long)row * in;
                for (int pass = 0; pass < in; pass += 256 * (UNROLL / 2)) {
                    float4 lo[UNROLL / 2], hi[UNROLL / 2];
                    #pragma unroll
                    for (int i = 0; i < UNROLL / 2; i++) {
                        int c = pass + (i * 32 + lane) * 8;
                        if (c < in) { lo[i] = *(const float4*)(g + c); hi[i] = *(const float4*)(g + c + 4); }
                    }
                    #pragma unroll
                    for (int i = 0; i < UNROLL / 2; i++) {
                        int c = pass + (i * 32 + lane) * 8;
                        if (c < in) {
                            float f[8] = { lo[i].x, lo[i].y, lo[i].z, lo[i].w, hi[i].x, hi[i].y, hi[i].z, hi[i].w };
                            dot8(x, xs, N, c, f, acc);
                        }
                    }
                }
            } else {
                const bf16* wr = row < L + Rw ? W + (long long)(row - L) * ldw : A + (long long)(row - L - Rw) * in;
                for (int pass = 0; pass < in; pass += 256 * UNROLL) {
                    uint4 wv[UNROLL];
                    #pragma unroll
                    for (int i = 0; i < UNROLL; i++) {
                        int c = pass + (i * 32 + lane) * 8;
                        if (c < in) wv[i] = *(const uint4*)(wr + c);
                    }
                    #pragma unroll
                    for (int i = 0; i < UNROLL; i++) {
                        int c = pass + (i * 32 + lane) * 8;
                        if (c < in) { float f[8]; unpack8(wv[i], f); dot8(x, xs, N, c, f, acc); }
                    }
                }
            }
            #pragma unroll
            for (int t = 0; t < TOK; t++) {
                if (t < N) {
                    float v = acc[t];
                    #pragma unroll
                    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
                    if (lane == 0) {
                        if (row >= L && row < L + Rw) y[(long long)t * ys + row - L] = f2bf(v);
                        else h[(long long)t * (L + R) + (row < L ? row : row - Rw)] = v;
                    }
                }
            }
        }
        """;

    private static readonly CudaKernelCache Kernels = new(Source, "decode GEMV kernel", "cuBLAS GEMM", "decode GEMV kernel");

    /// <summary>Whether decode-sized projections may use the kernel (default true; <c>METEORA_DECODE_GEMV=off</c> keeps cuBLAS).</summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("METEORA_DECODE_GEMV") is not ("off" or "0" or "false");

    /// <summary>What decode-sized projections use on <paramref name="device"/>, and why.</summary>
    public static string Describe(Device device)
    {
        if (device.type != DeviceType.CUDA) return "ATen GEMM (CPU)";
        if (!Enabled) return "cuBLAS GEMM (decode GEMV kernel switched off)";
        Kernel(device, out var status);
        return $"{status}, up to {MaxTokens} tokens";
    }

    private static CudaKernel? Kernel(Device device, out string status) =>
        Kernels.Get(device.index < 0 ? 0 : device.index, "meteora_gemv_bf16", out status);

    /// <summary>
    /// Whether the kernel takes x (N, in) against weight rows <paramref name="w"/> (rows, in): bfloat16 on one CUDA
    /// device, 1 ≤ N ≤ <see cref="MaxTokens"/>, in a multiple of 8, unit column strides and 16-byte aligned rows, no
    /// gradient wanted, the kernel built here.
    /// </summary>
    public static bool Applies(Tensor x2, Tensor w)
    {
        if (!Enabled || x2.device_type != DeviceType.CUDA || x2.dtype != ScalarType.BFloat16 || w.dtype != ScalarType.BFloat16
            || x2.dim() != 2 || x2.shape[0] < 1 || x2.shape[0] > MaxTokens || x2.shape[1] % 8 != 0 || w.shape[1] != x2.shape[1]
            || x2.device_index != w.device_index || !Aligned(x2) || !Aligned(w)
            || is_grad_enabled() && (w.requires_grad || x2.requires_grad))
            return false;
        return Kernel(x2.device, out _) is not null;
    }

    /// <summary>y = x wᵀ (N, rows) bfloat16, for inputs <see cref="Applies"/> accepted.</summary>
    public static Tensor Apply(Tensor x2, Tensor w)
    {
        var y = empty(x2.shape[0], w.shape[0], ScalarType.BFloat16, x2.device);                // (N, rows)
        Launch(x2, null, w, null, y, null);
        return y;
    }

    /// <summary>
    /// MeteoRA's decode pass in one launch: y = x wᵀ (N, rows) bfloat16 and h = x [gate; a]ᵀ (N, L + ΣR) float32, for
    /// <paramref name="gate"/> (L, in) float32 and <paramref name="a"/> (ΣR, in) bfloat16, contiguous and aligned.
    /// </summary>
    public static (Tensor Y, Tensor H) ApplyWithAdapters(Tensor x2, Tensor w, Tensor gate, Tensor a)
    {
        if (gate.dtype != ScalarType.Float32 || a.dtype != ScalarType.BFloat16 || !gate.is_contiguous() || !a.is_contiguous()
            || !Aligned(gate) || !Aligned(a) || gate.shape[1] != x2.shape[1] || a.shape[1] != x2.shape[1])
            throw new ArgumentException($"decode GEMV: gate {string.Join('×', gate.shape)} {gate.dtype} and adapters {string.Join('×', a.shape)} {a.dtype} do not fit inputs {x2.shape[1]} wide");
        var y = empty(x2.shape[0], w.shape[0], ScalarType.BFloat16, x2.device);                // (N, out)
        var h = empty(x2.shape[0], gate.shape[0] + a.shape[0], ScalarType.Float32, x2.device); // (N, L + ΣR)
        Launch(x2, gate, w, a, y, h);
        return (y, h);
    }

    private static void Launch(Tensor x2, Tensor? gate, Tensor w, Tensor? a, Tensor y, Tensor? h)
    {
        var kernel = Kernel(x2.device, out var status) ?? throw new MeteoraException($"decode GEMV: {status}");
        IntPtr xp = DeviceMemory.Address(x2), wp = DeviceMemory.Address(w), yp = DeviceMemory.Address(y);
        IntPtr gp = gate is null ? IntPtr.Zero : DeviceMemory.Address(gate), ap = a is null ? IntPtr.Zero : DeviceMemory.Address(a);
        IntPtr hp = h is null ? IntPtr.Zero : DeviceMemory.Address(h);
        long xs = x2.stride(0), ldw = w.stride(0), ys = y.stride(0);
        int N = (int)x2.shape[0], inF = (int)x2.shape[1], L = gate is null ? 0 : (int)gate.shape[0], Rw = (int)w.shape[0];
        int R = a is null ? 0 : (int)a.shape[0];
        void** args = stackalloc void*[14];
        args[0] = &xp; args[1] = &xs; args[2] = &N; args[3] = &inF; args[4] = &gp; args[5] = &L; args[6] = &wp; args[7] = &ldw;
        args[8] = &Rw; args[9] = &ap; args[10] = &R; args[11] = &yp; args[12] = &ys; args[13] = &hp;
        int rows = L + Rw + R;
        kernel.Launch((uint)((rows + WarpsPerBlock - 1) / WarpsPerBlock), 32 * WarpsPerBlock, args);
    }

    /// <summary>Unit column stride and 16-byte aligned data and rows, as the kernel's vector loads need.</summary>
    private static bool Aligned(Tensor t) =>
        t.stride(-1) == 1 && DeviceMemory.Address(t) % 16 == 0 && (t.dim() < 2 || t.stride(0) * t.ElementSize % 16 == 0);
}
