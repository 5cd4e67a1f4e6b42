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
/// Numerics follow the ATen chain it replaces: ranking on the float32 gate's logits of the row's input
/// (<see cref="ExactRanking"/>, one float32 GEMM before the launch) or, with exact ranking off, on the fused GEMM's
/// bfloat16 logits; softmax in float32, the weight rounded to bfloat16, then a bfloat16 multiply. Compiled at first
/// use with NVRTC; where CUDA's driver or NVRTC is missing, <see cref="TryGet"/> says why and the caller keeps the
/// ATen chain.
/// </para>
/// </summary>
internal static unsafe class RoutingKernel
{
    /// <summary>Largest adapter count and top-k the kernel takes.</summary>
    public const int MaxAdapters = 256, MaxTopK = 8;
    private const int WarpsPerBlock = 4;

    /// <summary>
    /// The device functions that rank and weigh (logits loading, warp-wide top-k, softmax weights, scaling), shared
    /// with <see cref="SelectiveMixKernel"/> so that both paths pick and weigh adapters identically.
    /// </summary>
    internal const string Ranking = Bf16Device.Prelude + """
        #define NEG_INF __int_as_float(0xff800000)   /* no math.h under NVRTC */
        #define PER 8    /* logits per lane: L <= 256 */
        #define MAXK 8

        #define POS_INF __int_as_float(0x7f800000)
        // NaN ranks first, as in ATen's sort and topk; as +inf every lane compares it alike (a NaN would make the
        // lanes' top-k differ).
        __device__ __forceinline__ float ranked(float f) { return f != f ? POS_INF : f; }

        // The row's L logits into v (lane j holds logits j, j+32, …): the float32 gate's, exact[j] (ExactRanking), or
        // without them the fused GEMM's low-precision ones, h[gateCol + j].
        __device__ __forceinline__ void load_logits(const bf16* p, int gateCol, const float* exact, int L, int lane, float* v)
        {
            #pragma unroll
            for (int i = 0; i < PER; i++) {
                int j = lane + 32 * i;
                v[i] = j >= L ? NEG_INF : ranked(exact != 0 ? exact[j] : bf2f(p[gateCol + j]));
            }
        }

        // Top-k of v (warp-wide) into sel/top, descending; lower index wins a tie. k <= MAXK.
        __device__ __forceinline__ void top_k(const float* v, int L, int k, int lane, int* sel, float* top)
        {
            unsigned int taken = 0;
            #pragma unroll
            for (int t = 0; t < MAXK; t++) {
                sel[t] = -1; top[t] = NEG_INF;
                if (t < k) {
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
        }

        // softmax(top / T) in float32 (weight 1 when k = 1), rounded to bfloat16 as the ATen path's cast does.
        __device__ __forceinline__ void weights(const float* top, int k, float invT, float* w)
        {
            float sum = 0.f;
            #pragma unroll
            for (int t = 0; t < MAXK; t++) { w[t] = t < k ? expf(top[t] * invT - top[0] * invT) : 0.f; sum += w[t]; }
            #pragma unroll
            for (int t = 0; t < MAXK; t++) w[t] = k == 1 ? (t == 0 ? 1.f : 0.f) : bf2f(f2bf(w[t] / sum));
        }

        // Scales the row's L*r rank columns by their adapter's weight (0 for adapters not selected).
        __device__ __forceinline__ void scale(bf16* p, int zCol, int L, int r, const int* sel, const float* w, int lane)
        {
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

    internal const string Source = Ranking + """
        // h: (rows, ld) bfloat16; z = h[:, zCol : zCol + L*r], low-precision logits = h[:, gateCol : gateCol + L].
        // exact: (rows, L) float32, the float32 gate's logits to rank from, or null (rank from h's).
        extern "C" __global__ void meteora_route_bf16(bf16* h, long long ld, int rows, int zCol, int gateCol,
                                                      int L, int r, int k, float invT, const float* exact)
        {
            int row = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5);
            int lane = threadIdx.x & 31;
            if (row >= rows) return;
            bf16* p = h + (long long)row * ld;
            int sel[MAXK]; float top[MAXK], w[MAXK], v[PER];
            load_logits(p, gateCol, exact != 0 ? exact + (long long)row * L : exact, L, lane, v);
            top_k(v, L, k, lane, sel, top);
            weights(top, k, invT, w);
            scale(p, zCol, L, r, sel, w, lane);
        }

        // Per-row routing (serving): token `row` belongs to batch row b = row / perRow, whose mode is -1 (the gates,
        // with its own k and temperature), -2 (no adapter: all weights 0) or an adapter index (that adapter, weight 1).
        // With usage (B, G, L) float32, each batch row's last token adds its weights into group `group`.
        extern "C" __global__ void meteora_route_rows_bf16(bf16* h, long long ld, int rows, int zCol, int gateCol, int L, int r,
                                                           const long long* mode, const long long* topk, const float* temperature,
                                                           int perRow, float* usage, int groups, int group, const float* exact)
        {
            int row = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5);
            int lane = threadIdx.x & 31;
            if (row >= rows) return;
            bf16* p = h + (long long)row * ld;
            int b = row / perRow;
            long long m = mode[b];
            if (m >= L) m = -2;                                  /* no such adapter: route nothing */
            int sel[MAXK]; float top[MAXK], w[MAXK], v[PER];
            int k = 0;
            if (m == -1) {
                k = (int)topk[b];
                if (k > MAXK) k = MAXK;
                if (k > L) k = L;
                if (k < 1) k = 1;
                load_logits(p, gateCol, exact != 0 ? exact + (long long)row * L : exact, L, lane, v);
                top_k(v, L, k, lane, sel, top);
                weights(top, k, 1.f / temperature[b], w);
            } else {
                #pragma unroll
                for (int t = 0; t < MAXK; t++) { sel[t] = -1; w[t] = 0.f; }
                if (m >= 0) { sel[0] = (int)m; w[0] = 1.f; k = 1; }
            }
            scale(p, zCol, L, r, sel, w, lane);
            if (usage != 0 && lane == 0 && row % perRow == perRow - 1)
                for (int t = 0; t < k; t++) atomicAdd(usage + ((long long)b * groups + group) * L + sel[t], w[t]);
        }
        """;

    private static readonly CudaKernelCache Kernels = new(Source, "fused routing kernel", "ATen routing ops", "fused kernel");

    /// <summary>
    /// Whether per-row routing (<see cref="RowRouting"/>, serving) may use its kernel (default true since it was
    /// checked on an H200: `bench layer`'s rows-kernel within 0.0057 of loop, as the fused kernel;
    /// docs/BENCHMARKS.md "Serving"). <c>METEORA_ROW_ROUTING_KERNEL=off</c> keeps the ATen chain.
    /// </summary>
    public static bool RowsEnabled { get; set; } = Environment.GetEnvironmentVariable("METEORA_ROW_ROUTING_KERNEL") is not ("off" or "0" or "false");

    /// <summary>
    /// Whether the fused path may use the kernel (default true; <c>METEORA_ROUTING_KERNEL=off</c> or setting this
    /// false keeps the ATen chain, e.g. to compare the two).
    /// </summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("METEORA_ROUTING_KERNEL") is not ("off" or "0" or "false");

    /// <summary>
    /// The kernel for CUDA device <paramref name="device"/>, compiled and loaded on first call, or null (with
    /// the reason in <paramref name="status"/>) when it cannot be built here.
    /// </summary>
    public static CudaKernel? TryGet(int device, out string status) => Kernels.Get(device, "meteora_route_bf16", out status);

    /// <summary>The per-row kernel (serving) for CUDA device <paramref name="device"/>, or null with the reason.</summary>
    public static CudaKernel? TryGetRows(int device, out string status) => Kernels.Get(device, "meteora_route_rows_bf16", out status);

    /// <summary>What the fused dense path uses on <paramref name="device"/>: the kernel or the ATen ops, and why.</summary>
    public static string Describe(Device device)
    {
        if (device.type != DeviceType.CUDA) return "ATen routing ops (CPU)";
        if (!Enabled) return "ATen routing ops (fused kernel switched off)";
        TryGet(device.index < 0 ? 0 : device.index, out var status);
        return ExactRanking.Enabled ? $"{status}; float32 gate logits: {GateLogitsKernel.Describe(device)}" : status;
    }

    /// <summary>
    /// Routes and scales in place. h (N, C) contiguous bfloat16 on CUDA; rank columns at
    /// [<paramref name="zColumn"/>, +L·r), low-precision logits at [<paramref name="gateColumn"/>, +L).
    /// <paramref name="exact"/>: (N, L) float32 contiguous logits of the float32 gate (<see cref="ExactRanking"/>) to rank
    /// and weigh from instead, or null.
    /// </summary>
    public static void Apply(CudaKernel kernel, Tensor h, long zColumn, long gateColumn, int adapters, int rank, int topK, double temperature, Tensor? exact)
    {
        IntPtr data = DeviceMemory.Address(h);
        long ld = h.stride(0);
        int rows = (int)h.shape[0], zCol = (int)zColumn, gateCol = (int)gateColumn, L = adapters, r = rank, k = topK;
        float invT = (float)(1.0 / temperature);
        IntPtr logits = ExactArgument(exact, rows, L, h.device);
        void** args = stackalloc void*[10];
        args[0] = &data; args[1] = &ld; args[2] = &rows; args[3] = &zCol; args[4] = &gateCol;
        args[5] = &L; args[6] = &r; args[7] = &k; args[8] = &invT; args[9] = &logits;
        uint blocks = (uint)((rows + WarpsPerBlock - 1) / WarpsPerBlock);
        kernel.Launch(blocks, 32 * WarpsPerBlock, args);
    }

    /// <summary>
    /// Per-row routing in place (<see cref="RowRouting"/>): as <see cref="Apply"/>, with each batch row's mode, top-k
    /// (at most <see cref="MaxTopK"/>) and temperature from <paramref name="rows"/>, and its usage added into
    /// layer group <paramref name="group"/>. h (B·T, C) for B rows of <paramref name="perRow"/> tokens.
    /// </summary>
    public static void ApplyRows(CudaKernel kernel, Tensor h, long zColumn, long gateColumn, int adapters, int rank, RowRouting rows, int perRow, int group, Tensor? exact)
    {
        IntPtr data = DeviceMemory.Address(h);
        IntPtr mode = DeviceMemory.Address(rows.Mode), topK = DeviceMemory.Address(rows.TopK), temperature = DeviceMemory.Address(rows.Temperature);
        IntPtr usage = rows.Usage is { } u ? DeviceMemory.Address(u) : IntPtr.Zero;
        long ld = h.stride(0);
        int count = (int)h.shape[0], zCol = (int)zColumn, gateCol = (int)gateColumn, L = adapters, r = rank, per = perRow, groups = rows.Groups, g = group;
        IntPtr logits = ExactArgument(exact, count, L, h.device);
        void** args = stackalloc void*[15];
        args[0] = &data; args[1] = &ld; args[2] = &count; args[3] = &zCol; args[4] = &gateCol; args[5] = &L; args[6] = &r;
        args[7] = &mode; args[8] = &topK; args[9] = &temperature; args[10] = &per; args[11] = &usage; args[12] = &groups; args[13] = &g;
        args[14] = &logits;
        uint blocks = (uint)((count + WarpsPerBlock - 1) / WarpsPerBlock);
        kernel.Launch(blocks, 32 * WarpsPerBlock, args);
    }

    private static bool SameDevice(Tensor t, Device device) => t.device_type == device.type && t.device_index == device.index;

    /// <summary>The kernel's <c>exact</c> pointer: null, or <paramref name="exact"/> checked to be (rows, L) float32 contiguous on h's device.</summary>
    private static IntPtr ExactArgument(Tensor? exact, int rows, int adapters, Device device)
    {
        if (exact is null) return IntPtr.Zero;
        if (exact.dtype != ScalarType.Float32 || exact.dim() != 2 || exact.shape[0] != rows || exact.shape[1] != adapters
            || !exact.is_contiguous() || !SameDevice(exact, device))
            throw new ArgumentException($"routing kernel: float32 gate logits {string.Join('×', exact.shape)} {exact.dtype} on {exact.device} do not fit {rows} rows of {adapters} adapters on {device}");
        return DeviceMemory.Address(exact);
    }
}
