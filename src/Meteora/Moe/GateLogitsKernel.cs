using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Moe;

/// <summary>
/// The float32 gate's logits <c>fl₃₂(x Gᵀ)</c> (N, L) of a bfloat16 input (N, in) in one NVRTC launch: what exact ranking
/// (<see cref="ExactRanking"/>) routes every token of a bfloat16 model on, from two tokens up (one token's come out of the
/// decode GEMV).
/// <para>
/// Why a kernel: ATen has no bfloat16 × float32 product, so the logits were <c>linear(x.to(float32), G)</c> — a copy of
/// x widened to float32 and cuBLAS's SIMT SGEMM with a split-K reduction: 20.8 µs per 4096-wide projection of a 1 × 512
/// prefill and 92.7 µs at 8 × 512 (57.8 and 289 for the 14 336-wide down projection) on an H200, most of what
/// MeteoRA added to prefill (docs/BENCHMARKS.md, "MeteoRA prefill"). A float32 SIMT kernel of ours was only 1.5–1.8 ×
/// faster: N·L·in float32 multiply-adds are the bound, not memory.
/// </para>
/// <para>
/// So the products run on the tensor cores, exactly: each float32 gate value is split into three bfloat16 parts
/// g = hi + mid + lo with no rounding (truncations whose remainders are exact, for every |g| ≥ 2⁻¹⁰⁹), x is bfloat16
/// already, so every product of x with a part is exact in float32, and three bfloat16 MMAs (m16n8k16, float32
/// accumulators) per tile add them up. What remains is float32 addition in another order than cuBLAS's, and the tensor
/// cores' additions truncate rather than round, so a logit can differ from <c>linear</c>'s in its last float32 bits
/// (measured: within twice float32's summation bound) — the limit <see cref="ExactRanking"/> already states between GEMM
/// implementations. An infinite input gives NaN (∞ × a zero part) where <c>linear</c> gives ±∞; routing ranks NaN first.
/// </para>
/// <para>
/// Layout: a block takes 16 tokens (the MMA's rows) × 32 gate rows (four tiles of 8) × a fixed slice of 1024 inputs, a
/// quarter of the slice per warp; each lane loads four k-steps' fragments straight from global memory before it uses
/// any (so their latencies overlap), and the warps' sums meet in shared memory in warp order. A first layout (64 tokens
/// per block, one warp walking the whole slice) left 32 blocks at 1 × 512, each waiting on 64 dependent loads in a row:
/// 70 µs, slower than the SGEMM. Slices are
/// fixed, not sized to the batch, so a token's logits do not depend on how many tokens share the launch. With more
/// than one slice each block writes its partial sums and the last block of a tile to finish (a ticket per tile, reset
/// by that block for the next launch) adds the slices in order, so the result is deterministic.
/// </para>
/// </summary>
internal static unsafe class GateLogitsKernel
{
    private const int Warps = 4, TokensPerBlock = 16, RowsPerBlock = 32, SliceInputs = 1024;

    /// <summary>Largest token count one launch takes (its tickets are allocated once per device and stream for this many).</summary>
    public const int MaxTokens = 65536;

    /// <summary>Largest gate (adapter count) the kernel takes, as the routing kernel.</summary>
    public const int MaxAdapters = RoutingKernel.MaxAdapters;

    private const int MaxTiles = MaxTokens / TokensPerBlock * (MaxAdapters / RowsPerBlock);

    internal const string Source = Bf16Device.Prelude + """
        #define WARPS 4          // each a quarter of the block's slice, the same tokens and rows
        #define TPB 16           // tokens per block: the MMA's 16 rows
        #define LR 32            // gate rows per block: four MMA tiles of 8
        #define SLICE 1024       // inputs per block (WARPS x 256)
        #define AHEAD 4          // k-steps of 16 whose fragments are loaded before any is used

        // g = hi + mid + lo, each a bfloat16 (its top 16 bits): hi truncates g to 8 significant bits, so g - hi is exact
        // with at most 16 left; mid truncates that to 8, and the rest (at most 8 bits) is exact in bfloat16. Exact for
        // every finite |g| >= 2^-109 (checked over all float32 bit patterns); below, the bits lost are under 2^-133.
        __device__ __forceinline__ void split3(float g, unsigned int& hi, unsigned int& mid, unsigned int& lo) {
            unsigned int h = __float_as_uint(g) & 0xffff0000u;
            float r = (h & 0x7f800000u) == 0x7f800000u ? 0.f : g - __uint_as_float(h);   // ±inf and NaN: all in hi
            unsigned int m = __float_as_uint(r) & 0xffff0000u;
            hi = h >> 16; mid = m >> 16; lo = __float_as_uint(r - __uint_as_float(m)) >> 16;
        }

        // D += A B on the tensor cores: A 16 x 16 bfloat16 (row-major fragments), B 16 x 8 bfloat16, D 16 x 8 float32.
        __device__ __forceinline__ void mma(float* d, const unsigned int* a, unsigned int b0, unsigned int b1) {
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                         : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
        }

        // x (rows, in) bfloat16, rows ldx apart; G (L, in) float32 contiguous; out (rows, L) float32.
        // Grid: tokenBlocks x slices x rowBlocks blocks (flattened), 32 WARPS threads. With slices > 1: part
        // (slices, rows, L) float32 scratch and tickets (tokenBlocks * rowBlocks) unsigned ints, zero on entry and on exit.
        extern "C" __global__ void __launch_bounds__(32 * WARPS) meteora_gate_logits_bf16(
            const bf16* __restrict__ x, long long ldx, int rows, int in, const float* __restrict__ G, int L,
            float* __restrict__ out, float* part, unsigned int* tickets)
        {
            __shared__ float red[WARPS - 1][16][32];
            __shared__ bool last;
            int slices = (in + SLICE - 1) / SLICE;
            int tokenBlocks = (rows + TPB - 1) / TPB;
            int b = blockIdx.x;
            int tb = b % tokenBlocks; b /= tokenBlocks;
            int slice = b % slices;
            int rb = b / slices;
            int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
            int g = lane >> 2, t = lane & 3;                  // the MMA fragments' row group and column pair
            int tok0 = tb * TPB;
            int l0 = rb * LR;
            int c1 = min(in, slice * SLICE + SLICE);
            int k0 = slice * SLICE + warp * (SLICE / WARPS), k1 = min(c1, k0 + SLICE / WARPS);

            // This lane's two x rows (tok0 + g, tok0 + g + 8) and four gate rows (l0 + 8j + g), null when past the end.
            const bf16* xr0 = tok0 + g < rows ? x + (long long)(tok0 + g) * ldx : 0;
            const bf16* xr1 = tok0 + g + 8 < rows ? x + (long long)(tok0 + g + 8) * ldx : 0;
            const float* gr[4];
            #pragma unroll
            for (int j = 0; j < 4; j++) gr[j] = l0 + 8 * j + g < L ? G + (long long)(l0 + 8 * j + g) * in : 0;

            float acc[4][4];
            #pragma unroll
            for (int j = 0; j < 4; j++)
                #pragma unroll
                for (int i = 0; i < 4; i++) acc[j][i] = 0.f;

            for (int k = k0; k < k1; k += 16 * AHEAD) {
                // AHEAD steps' fragments first (their loads in flight together), then their MMAs. Columns k + 2t, +1 and
                // k + 8 + 2t, +1: pairs wholly inside or past the range (in is a multiple of 8).
                unsigned int a[AHEAD][4];
                float2 ga[AHEAD][4], gb[AHEAD][4];
                #pragma unroll
                for (int s = 0; s < AHEAD; s++) {
                    int ka = k + 16 * s + 2 * t, kb = ka + 8;
                    bool va = ka < k1, vb = kb < k1;
                    a[s][0] = xr0 && va ? *(const unsigned int*)(xr0 + ka) : 0u;
                    a[s][1] = xr1 && va ? *(const unsigned int*)(xr1 + ka) : 0u;
                    a[s][2] = xr0 && vb ? *(const unsigned int*)(xr0 + kb) : 0u;
                    a[s][3] = xr1 && vb ? *(const unsigned int*)(xr1 + kb) : 0u;
                    #pragma unroll
                    for (int j = 0; j < 4; j++) {
                        ga[s][j] = gr[j] && va ? *(const float2*)(gr[j] + ka) : make_float2(0.f, 0.f);
                        gb[s][j] = gr[j] && vb ? *(const float2*)(gr[j] + kb) : make_float2(0.f, 0.f);
                    }
                }
                #pragma unroll
                for (int s = 0; s < AHEAD; s++)
                    #pragma unroll
                    for (int j = 0; j < 4; j++) {
                        unsigned int h0, m0, o0, h1, m1, o1, h2, m2, o2, h3, m3, o3;
                        split3(ga[s][j].x, h0, m0, o0); split3(ga[s][j].y, h1, m1, o1);
                        split3(gb[s][j].x, h2, m2, o2); split3(gb[s][j].y, h3, m3, o3);
                        // Smallest parts first; each product is exact in float32 (8 x 8 significant bits).
                        mma(acc[j], a[s], o0 | (o1 << 16), o2 | (o3 << 16));
                        mma(acc[j], a[s], m0 | (m1 << 16), m2 | (m3 << 16));
                        mma(acc[j], a[s], h0 | (h1 << 16), h2 | (h3 << 16));
                    }
            }

            // The warps' quarters meet in warp 0, added in warp order (deterministic).
            if (warp > 0)
                #pragma unroll
                for (int j = 0; j < 4; j++)
                    #pragma unroll
                    for (int i = 0; i < 4; i++) red[warp - 1][4 * j + i][lane] = acc[j][i];
            __syncthreads();
            if (warp == 0) {
                #pragma unroll
                for (int w = 0; w < WARPS - 1; w++)
                    #pragma unroll
                    for (int j = 0; j < 4; j++)
                        #pragma unroll
                        for (int i = 0; i < 4; i++) acc[j][i] += red[w][4 * j + i][lane];
                // Accumulator fragments: (row g, columns 2t, 2t+1) and (row g + 8, the same columns) of each 16 x 8 tile.
                float* dst = slices == 1 ? out : part + (long long)slice * rows * L;
                #pragma unroll
                for (int j = 0; j < 4; j++)
                    #pragma unroll
                    for (int i = 0; i < 4; i++) {
                        int tok = tok0 + g + (i >= 2 ? 8 : 0), l = l0 + 8 * j + 2 * t + (i & 1);
                        if (tok < rows && l < L) dst[(long long)tok * L + l] = acc[j][i];
                    }
            }
            if (slices == 1) return;

            // The tile's last block to finish adds the slices in order (deterministic) and resets the ticket.
            __threadfence();
            __syncthreads();
            unsigned int* ticket = tickets + rb * tokenBlocks + tb;
            if (threadIdx.x == 0) last = atomicAdd(ticket, 1u) == (unsigned int)(slices - 1);
            __syncthreads();
            if (!last) return;
            __threadfence();
            for (int i = threadIdx.x; i < TPB * LR; i += 32 * WARPS) {
                int tok = tok0 + i / LR, l = l0 + i % LR;
                if (tok >= rows || l >= L) continue;
                float s = 0.f;
                for (int q = 0; q < slices; q++) s += __ldcg(part + ((long long)q * rows + tok) * L + l);
                out[(long long)tok * L + l] = s;
            }
            if (threadIdx.x == 0) *ticket = 0u;
        }
        """;

    private static readonly CudaKernelCache Kernels = new(Source, "gate logits kernel", "float32 copy and SGEMM", "gate logits kernel");
    private static readonly Dictionary<(int Device, IntPtr Stream), Tensor> Tickets = [];

    /// <summary>
    /// Whether exact ranking may use the kernel (default true; <c>METEORA_GATE_LOGITS_KERNEL=off</c> keeps
    /// <c>linear(x.to(float32), G)</c>, e.g. to compare the two).
    /// </summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("METEORA_GATE_LOGITS_KERNEL") is not ("off" or "0" or "false");

    /// <summary>What exact ranking's logits use on <paramref name="device"/> from two tokens up, and why.</summary>
    public static string Describe(Device device)
    {
        if (device.type != DeviceType.CUDA) return "float32 copy and GEMM (CPU)";
        if (!Enabled) return "float32 copy and SGEMM (gate logits kernel switched off)";
        Kernels.Get(device.index < 0 ? 0 : device.index, "meteora_gate_logits_bf16", out var status);
        return status;
    }

    /// <summary>
    /// The float32 gate's logits (N, L) float32 of <paramref name="x2"/> (N, in) bfloat16, or null where the kernel does
    /// not apply: not CUDA, not bfloat16 against a float32 gate (L, in) on the same device, a gradient wanted (the kernel
    /// has no backward), in not a multiple of 8, rows not 16-byte aligned, N outside 1…<see cref="MaxTokens"/>, L above
    /// <see cref="MaxAdapters"/>, the kernel not built here.
    /// </summary>
    public static Tensor? TryLogits(Tensor x2, Tensor gate)
    {
        if (!Enabled || x2.device.type != DeviceType.CUDA || x2.dtype != ScalarType.BFloat16 || x2.dim() != 2
            || gate.dtype != ScalarType.Float32 || gate.dim() != 2 || !gate.is_contiguous() || gate.shape[1] != x2.shape[1]
            || gate.device_type != x2.device_type || gate.device_index != x2.device_index
            || x2.shape[0] < 1 || x2.shape[0] > MaxTokens || gate.shape[0] < 1 || gate.shape[0] > MaxAdapters || x2.shape[1] < 8 || x2.shape[1] % 8 != 0
            || !SelectiveMixKernel.Aligned(x2) || !SelectiveMixKernel.Aligned(gate)
            || is_grad_enabled() && (x2.requires_grad || gate.requires_grad))
            return null;
        int device = x2.device.index < 0 ? 0 : x2.device.index;
        if (Kernels.Get(device, "meteora_gate_logits_bf16", out _) is not { } kernel) return null;

        int rows = (int)x2.shape[0], inF = (int)x2.shape[1], L = (int)gate.shape[0];
        int slices = (inF + SliceInputs - 1) / SliceInputs;
        int tokenBlocks = (rows + TokensPerBlock - 1) / TokensPerBlock, rowBlocks = (L + RowsPerBlock - 1) / RowsPerBlock;
        IntPtr tickets = IntPtr.Zero;
        if (slices > 1)
        {
            // One zeroed array per device and stream for the largest grid (launches on one stream run in order, and
            // each leaves it zero again; libtorch's streams are a small pool). Made outside a graph capture only: inside
            // one its zeroing would run only at replay and its memory would come from the graph's pool, so a first
            // call there takes the ATen path.
            var stream = CudaStreams.CurrentHandle(device);
            lock (Tickets)
            {
                if (!Tickets.TryGetValue((device, stream), out var t))
                {
                    if (CudaStreams.IsCapturing(stream)) return null;
                    Tickets[(device, stream)] = t = zeros(MaxTiles, ScalarType.Int32, x2.device).DetachFromDisposeScope();   // lives with the process
                }
                tickets = DeviceMemory.Address(t);
            }
        }
        var output = empty(rows, L, ScalarType.Float32, x2.device);                             // (N, L)
        using var part = slices > 1 ? empty(slices, rows, L, ScalarType.Float32, x2.device) : null;   // (slices, N, L)
        IntPtr xp = DeviceMemory.Address(x2), gp = DeviceMemory.Address(gate), op = DeviceMemory.Address(output);
        IntPtr pp = part is null ? IntPtr.Zero : DeviceMemory.Address(part);
        long ldx = x2.stride(0);
        void** args = stackalloc void*[9];
        args[0] = &xp; args[1] = &ldx; args[2] = &rows; args[3] = &inF; args[4] = &gp; args[5] = &L;
        args[6] = &op; args[7] = &pp; args[8] = &tickets;
        kernel.Launch((uint)(tokenBlocks * slices * rowBlocks), 32 * Warps, args);
        return output;
    }
}
