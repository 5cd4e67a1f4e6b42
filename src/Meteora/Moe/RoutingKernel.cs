using System.Runtime.InteropServices;
using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Moe;

/// <summary>
/// The MeteoRA routing of the fused dense path in one CUDA kernel. On the fused GEMM's bfloat16 output
/// <c>h = x [W; A_all; G]ᵀ</c> (N, C) it reads each row's L gate logits, takes the top-k, weighs them with
/// softmax(top-k / T) and scales the row's rank columns z (L·r of them) in place: by the adapter's weight where
/// the adapter was picked, by 0 elsewhere. ATen needs six launches for this (topk, softmax, zeros, cast,
/// scatter, mul); at decode sizes each launch costs far more than its work, and 224 projections do it per step.
/// One warp per row; logits at most 256 (8 per lane), k at most 8.
/// <para>
/// Numerics follow the ATen chain it replaces: ranking on the bfloat16 logits, softmax in float32, the
/// weight rounded to bfloat16, then a bfloat16 multiply. Compiled at first use with NVRTC; where CUDA's driver
/// or NVRTC is missing, <see cref="TryGet"/> says why and the caller keeps the ATen chain.
/// </para>
/// </summary>
public static unsafe class RoutingKernel
{
    /// <summary>Largest adapter count and top-k the kernel takes.</summary>
    public const int MaxAdapters = 256, MaxTopK = 8;
    private const int WarpsPerBlock = 4;

    internal const string Source = """
        typedef unsigned short bf16;
        __device__ __forceinline__ float bf2f(bf16 v) { return __uint_as_float(((unsigned int)v) << 16); }
        __device__ __forceinline__ bf16 f2bf(float f) {
            unsigned int u = __float_as_uint(f);
            if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (bf16)((u >> 16) | 0x40u);   // NaN stays NaN
            u += 0x7fffu + ((u >> 16) & 1u);                                                                 // round to nearest even
            return (bf16)(u >> 16);
        }
        #define NEG_INF __int_as_float(0xff800000)   /* no math.h under NVRTC */
        #define PER 8    /* logits per lane: L <= 256 */
        #define MAXK 8

        // h: (rows, ld) bfloat16; z = h[:, zCol : zCol + L*r], logits = h[:, gateCol : gateCol + L].
        extern "C" __global__ void meteora_route_bf16(bf16* h, long long ld, int rows, int zCol, int gateCol,
                                                      int L, int r, int k, float invT)
        {
            int row = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5);
            int lane = threadIdx.x & 31;
            if (row >= rows) return;
            bf16* p = h + (long long)row * ld;
            float v[PER];
            #pragma unroll
            for (int i = 0; i < PER; i++) { int j = lane + 32 * i; v[i] = j < L ? bf2f(p[gateCol + j]) : NEG_INF; }
            unsigned int taken = 0;
            int sel[MAXK]; float top[MAXK];
            #pragma unroll
            for (int t = 0; t < MAXK; t++) {
                sel[t] = -1; top[t] = NEG_INF;
                if (t < k) {
                    // Warp-wide argmax over the logits not yet taken; the lower index wins a tie.
                    float best = NEG_INF; int bi = 0x7fffffff;
                    #pragma unroll
                    for (int i = 0; i < PER; i++) {
                        int j = lane + 32 * i;
                        if (j < L && !(taken & (1u << i)) && (v[i] > best || (v[i] == best && j < bi) || bi == 0x7fffffff)) { best = v[i]; bi = j; }
                    }
                    #pragma unroll
                    for (int off = 16; off > 0; off >>= 1) {
                        float ob = __shfl_xor_sync(0xffffffffu, best, off);
                        int oi = __shfl_xor_sync(0xffffffffu, bi, off);
                        if (oi != 0x7fffffff && (bi == 0x7fffffff || ob > best || (ob == best && oi < bi))) { best = ob; bi = oi; }
                    }
                    sel[t] = bi; top[t] = best;
                    #pragma unroll
                    for (int i = 0; i < PER; i++) if (lane + 32 * i == bi) taken |= 1u << i;
                }
            }
            // softmax(top / T) in float32 (weight 1 when k = 1), rounded to bfloat16 as the ATen path's cast does.
            float w[MAXK];
            float sum = 0.f;
            #pragma unroll
            for (int t = 0; t < MAXK; t++) { w[t] = t < k ? expf(top[t] * invT - top[0] * invT) : 0.f; sum += w[t]; }
            #pragma unroll
            for (int t = 0; t < MAXK; t++) w[t] = k == 1 ? (t == 0 ? 1.f : 0.f) : bf2f(f2bf(w[t] / sum));
            int R = L * r;
            for (int c = lane; c < R; c += 32) {
                int e = c / r;
                float f = 0.f;
                #pragma unroll
                for (int t = 0; t < MAXK; t++) if (sel[t] == e) f = w[t];
                bf16* q = p + zCol + c;
                *q = f2bf(bf2f(*q) * f);
            }
        }
        """;

    private static readonly object Gate = new();
    private static readonly Dictionary<int, (CudaKernel? Kernel, string Status)> PerDevice = [];

    /// <summary>
    /// Whether the fused path may use the kernel (default true; <c>METEORA_ROUTING_KERNEL=off</c> or setting this
    /// false keeps the ATen chain, e.g. to compare the two).
    /// </summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("METEORA_ROUTING_KERNEL") is not ("off" or "0" or "false");

    /// <summary>
    /// The kernel for CUDA device <paramref name="device"/>, compiled and loaded on first call, or null (with
    /// the reason in <paramref name="status"/>) when it cannot be built here.
    /// </summary>
    public static CudaKernel? TryGet(int device, out string status)
    {
        lock (Gate)
        {
            if (!PerDevice.TryGetValue(device, out var entry))
            {
                try
                {
                    var kernel = CudaKernel.Load(Source, "meteora_route_bf16", device);
                    entry = (kernel, $"fused routing kernel ({kernel.Architecture}, NVRTC from {Nvrtc.Location})");
                }
                catch (MeteoraException e)
                {
                    entry = (null, $"ATen routing ops (fused kernel unavailable: {e.Message})");
                }
                PerDevice[device] = entry;
            }
            status = entry.Status;
            return entry.Kernel;
        }
    }

    /// <summary>What the fused dense path uses on <paramref name="device"/>: the kernel or the ATen ops, and why.</summary>
    public static string Describe(Device device)
    {
        if (device.type != DeviceType.CUDA) return "ATen routing ops (CPU)";
        if (!Enabled) return "ATen routing ops (fused kernel switched off)";
        TryGet(device.index < 0 ? 0 : device.index, out var status);
        return status;
    }

    /// <summary>
    /// Routes and scales in place. h (N, C) contiguous bfloat16 on CUDA; rank columns at
    /// [<paramref name="zColumn"/>, +L·r), logits at [<paramref name="gateColumn"/>, +L).
    /// </summary>
    public static void Apply(CudaKernel kernel, Tensor h, long zColumn, long gateColumn, int adapters, int rank, int topK, double temperature)
    {
        IntPtr data = StorageData(h.Handle) + (nint)(h.storage_offset() * 2);
        long ld = h.stride(0);
        int rows = (int)h.shape[0], zCol = (int)zColumn, gateCol = (int)gateColumn, L = adapters, r = rank, k = topK;
        float invT = (float)(1.0 / temperature);
        void** args = stackalloc void*[9];
        args[0] = &data; args[1] = &ld; args[2] = &rows; args[3] = &zCol; args[4] = &gateCol;
        args[5] = &L; args[6] = &r; args[7] = &k; args[8] = &invT;
        uint blocks = (uint)((rows + WarpsPerBlock - 1) / WarpsPerBlock);
        kernel.Launch(blocks, 32 * WarpsPerBlock, args);
    }

    // The storage's base address (TorchSharp's own export; it exposes no tensor data pointer for CUDA tensors).
    [DllImport("LibTorchSharp", EntryPoint = "THSStorage_data_ptr")]
    private static extern IntPtr StorageData(IntPtr tensor);
}
