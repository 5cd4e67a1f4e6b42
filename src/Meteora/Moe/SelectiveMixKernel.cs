using System.Runtime.InteropServices;
using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Moe;

/// <summary>
/// MeteoRA's mixing at decode sizes in two CUDA kernels that read only what a token uses (issue #17 item 3; the
/// idea of Punica's BGMV, written here for a gate that picks the adapters on the GPU):
/// <list type="number">
/// <item><b>shrink</b>: one block per row of <c>[G; A_all]</c> (and group of 8 tokens) computes
///   <c>h = x [G; A_all]ᵀ</c> (N, L + ΣR) in float32: the float32 gate's logits (the exact ranking of
///   <see cref="ExactRanking"/>, with no cast of x and no separate GEMM) and the rank values z = x A_allᵀ.</item>
/// <item><b>expand</b>: per token, each warp ranks the L logits and weighs the top-k with <see cref="RoutingKernel"/>'s own
///   device functions (same ties, same softmax, same bfloat16 rounding of the weights), and every thread adds
///   <c>Σ_t Σ_ρ bf16(bf16(z[e_t·r + ρ])·w_t) · B[o, e_t·r + ρ]</c> to its output column in float32, rounding once, as
///   the dense path's scaling and addmm with beta = 1 do. Only the k chosen adapters' columns of B are read.</item>
/// </list>
/// The base GEMM <c>x Wᵀ</c> runs before them (cuBLAS) and the expand adds into its output, so a projection is three
/// launches (at one token two: <c>Llama.DecodeGemv</c> computes the base rows, gate logits and rank values at once), against five on the fused-GEMM path (cast, float32 gate GEMM, [W; A; G] GEMM, routing kernel, addmm),
/// whose small GEMMs at one or a few tokens cost far more than the bytes they read. The dense path adds the zero
/// products of the adapters not picked, so the two differ only in float32 summation order (and a NaN in an
/// unpicked adapter's rank values, which the dense path spreads as 0·NaN, does not reach the output here).
/// Used for at most <see cref="MaxTokens"/> tokens; beyond that the fused GEMM's dense path is faster (its GEMM
/// reads every weight once for all tokens). <c>METEORA_SELECTIVE_MIX=off</c> keeps the fused-GEMM path everywhere.
/// </summary>
internal static unsafe class SelectiveMixKernel
{
    /// <summary>Largest per-adapter rank the kernels take.</summary>
    public const int MaxRank = 64;
    private const int ExpandThreads = 256, TokensPerShrinkBlock = 8, ChunksPerThread = 4, MaxShrinkThreads = 512;

    /// <summary>
    /// Threads per shrink block: enough for one pass over a row of <paramref name="inFeatures"/> (each thread four
    /// 8-wide chunks, all loads issued at once), a whole number of warps, 64 to 512 (the kernel's launch bound: wider
    /// rows take more passes; 1 024 threads would need at most 64 registers each, which NVRTC does not promise).
    /// </summary>
    internal static uint ShrinkThreadsFor(int inFeatures) =>
        (uint)Math.Clamp((inFeatures / (8 * ChunksPerThread) + 31) / 32 * 32, 64, MaxShrinkThreads);

    internal const string Source = RoutingKernel.Ranking + """
        #define TOK 8
        #define MAXC 4


        // One block per (row j of [G; A_all], group of TOK tokens). x (N, in) bfloat16 with row stride xs; G (L, in)
        // float32 and A (R, in) bfloat16, contiguous; in a multiple of 8 and every row 16-byte aligned.
        // h (N, L + R) float32: h[n, j] = x_n · G_j for j < L, x_n · A_{j−L} from L on.
        // Each thread takes MAXC 8-wide chunks of the row per pass and issues all their loads before it multiplies (the
        // host sizes the block so that one pass covers the row): the block waits for memory once, not once per chunk.
        extern "C" __global__ void __launch_bounds__(512) meteora_shrink_bf16(const bf16* x, long long xs, int N, int in, const float* G, int L,
                                                       const bf16* A, int R, float* h)
        {
            __shared__ float part[TOK * 32];
            int rows = L + R, row = blockIdx.x % rows, n0 = (blockIdx.x / rows) * TOK;
            int tokens = min(TOK, N - n0), lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
            float acc[TOK];
            #pragma unroll
            for (int t = 0; t < TOK; t++) acc[t] = 0.f;
            for (int pass = 0; pass < in; pass += blockDim.x * 8 * MAXC) {
                float w[MAXC][8];
                #pragma unroll
                for (int i = 0; i < MAXC; i++) {
                    int c = pass + (threadIdx.x + i * blockDim.x) * 8;
                    if (c >= in) {
                        #pragma unroll
                        for (int j = 0; j < 8; j++) w[i][j] = 0.f;
                    } else if (row < L) {
                        const float4* g = (const float4*)(G + (long long)row * in + c);
                        float4 a = g[0], b = g[1];
                        w[i][0] = a.x; w[i][1] = a.y; w[i][2] = a.z; w[i][3] = a.w; w[i][4] = b.x; w[i][5] = b.y; w[i][6] = b.z; w[i][7] = b.w;
                    } else {
                        unpack8(*(const uint4*)(A + (long long)(row - L) * in + c), w[i]);
                    }
                }
                #pragma unroll
                for (int t = 0; t < TOK; t++) {
                    if (t < tokens) {
                        uint4 xr[MAXC];
                        #pragma unroll
                        for (int i = 0; i < MAXC; i++) {
                            int c = pass + (threadIdx.x + i * blockDim.x) * 8;
                            xr[i] = c < in ? *(const uint4*)(x + (long long)(n0 + t) * xs + c) : make_uint4(0u, 0u, 0u, 0u);
                        }
                        #pragma unroll
                        for (int i = 0; i < MAXC; i++) {
                            float xv[8];
                            unpack8(xr[i], xv);
                            #pragma unroll
                            for (int j = 0; j < 8; j++) acc[t] = fmaf(w[i][j], xv[j], acc[t]);
                        }
                    }
                }
            }
            #pragma unroll
            for (int t = 0; t < TOK; t++) {
                float v = acc[t];
                #pragma unroll
                for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
                if (lane == 0) part[t * 32 + warp] = v;
            }
            __syncthreads();
            if (threadIdx.x < tokens) {
                float s = 0.f;
                for (int i = 0; i < warps; i++) s += part[threadIdx.x * 32 + i];
                h[(long long)(n0 + threadIdx.x) * rows + row] = s;
            }
        }

        // One block per (token n, chunk of blockDim.x output columns) of one of up to MAXSEG projections (segments from
        // their blockStart on: q, k and v decoded together). Per segment: h (N, L + L·r) float32 from the shrink or the
        // decode GEMV; B (out, L·r) bfloat16 contiguous (each adapter's r columns together); y (N, out) bfloat16 with row
        // stride ys, the base output, to which the routed adapters' contribution is added. Every warp ranks the token's
        // logits itself (the warp-wide top-k leaves the same choice in every lane), so warps never wait for each other.
        #define MAXSEG 3
        struct ExpandSegment { bf16* y; const float* h; const bf16* B; long long ys; int out; int L; int r; int k; float invT; int blockStart; };
        struct ExpandSegments { ExpandSegment s[MAXSEG]; int count; };

        extern "C" __global__ void meteora_expand_bf16(ExpandSegments segs)
        {
            int si = 0;
            #pragma unroll
            for (int i = 1; i < MAXSEG; i++) if (i < segs.count && (int)blockIdx.x >= segs.s[i].blockStart) si = i;
            bf16* y = segs.s[si].y; const float* h = segs.s[si].h; const bf16* B = segs.s[si].B; long long ys = segs.s[si].ys;
            int out = segs.s[si].out, L = segs.s[si].L, r = segs.s[si].r, k = segs.s[si].k, block = blockIdx.x - segs.s[si].blockStart;
            float invT = segs.s[si].invT;
            int chunks = (out + blockDim.x - 1) / blockDim.x;
            int n = block / chunks, o = (block % chunks) * blockDim.x + threadIdx.x, lane = threadIdx.x & 31;
            bf16* p = y + (long long)n * ys + o;
            float base = o < out ? bf2f(*p) : 0.f;               // independent of the ranking: in flight meanwhile
            const float* hn = h + (long long)n * (L + L * r);
            int sel[MAXK]; float top[MAXK], w[MAXK], v[PER];
            load_logits(0, 0, hn, L, lane, v);
            top_k(v, L, k, lane, sel, top);
            weights(top, k, invT, w);
            if (o >= out) return;
            const bf16* b = B + (long long)o * L * r;
            float acc = 0.f;
            #pragma unroll
            for (int t = 0; t < MAXK; t++) {
                if (t >= k) break;
                const float* z = hn + L + sel[t] * r;
                const bf16* be = b + sel[t] * r;
                int i = 0;
                if ((r & 7) == 0)
                    for (; i < r; i += 8) {
                        float f[8];
                        unpack8(*(const uint4*)(be + i), f);
                        #pragma unroll
                        for (int j = 0; j < 8; j++)   // as the routing kernel's scale: bf16(bf16(z) · w), then the addmm
                            acc = fmaf(bf2f(f2bf(bf2f(f2bf(z[i + j])) * w[t])), f[j], acc);
                    }
                for (; i < r; i++) acc = fmaf(bf2f(f2bf(bf2f(f2bf(z[i])) * w[t])), bf2f(be[i]), acc);
            }
            *p = f2bf(base + acc);
        }
        """;

    private static readonly CudaKernelCache Kernels = new(Source, "selective mix kernels", "the fused GEMM's dense mix", "selective mix kernels");

    /// <summary>
    /// Whether small token counts may use the kernels (default true; <c>METEORA_SELECTIVE_MIX=off</c> or setting this
    /// false keeps the fused-GEMM path, e.g. to compare the two).
    /// </summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("METEORA_SELECTIVE_MIX") is not ("off" or "0" or "false");

    /// <summary>
    /// The most tokens (rows of a projection's input) the kernels take; from one more on, the fused GEMM's dense
    /// path runs. Measured with <c>bench layer</c> (docs/BENCHMARKS.md); <c>METEORA_SELECTIVE_MAX_TOKENS</c> overrides it.
    /// </summary>
    public static long MaxTokens { get; set; } =
        long.TryParse(Environment.GetEnvironmentVariable("METEORA_SELECTIVE_MAX_TOKENS"), out long n) && n >= 0 ? n : 16;

    /// <summary>The two kernels on CUDA device <paramref name="device"/>, or null with the reason in <paramref name="status"/>.</summary>
    public static (CudaKernel Shrink, CudaKernel Expand)? TryGet(int device, out string status)
    {
        var shrink = Kernels.Get(device, "meteora_shrink_bf16", out status);
        var expand = Kernels.Get(device, "meteora_expand_bf16", out var expandStatus);
        if (shrink is null || expand is null) { status = shrink is null ? status : expandStatus; return null; }
        return (shrink, expand);
    }

    /// <summary>What MeteoRA's mixing uses at decode sizes on <paramref name="device"/>, and why.</summary>
    public static string Describe(Device device)
    {
        if (device.type != DeviceType.CUDA) return "the fused GEMM's dense mix (CPU)";
        if (!Enabled) return "the fused GEMM's dense mix (selective mix kernels switched off)";
        if (!RoutingKernel.Enabled) return "the fused GEMM's dense mix with ATen routing (the routing kernel, which they need, is switched off)";
        if (!ExactRanking.Enabled) return "the fused GEMM's dense mix (exact ranking off: the kernels rank with the float32 gate)";
        return TryGet(device.index < 0 ? 0 : device.index, out var status) is null ? status
            : $"{status}, up to {MaxTokens} tokens; at one token the base rows: {Llama.DecodeGemv.Describe(device)}";
    }

    /// <summary>
    /// <c>y += Σ_{top-k} w_j B_j A_j x</c> in place: the shrink, then the expand. x (N, in) bfloat16 with unit column
    /// stride, rows and data 16-byte aligned; gate (L, in) float32, a (L·r, in) and b (out, L·r) bfloat16, contiguous,
    /// all on y's device; y (N, out) bfloat16, the base output.
    /// </summary>
    public static void Apply((CudaKernel Shrink, CudaKernel Expand) kernels, Tensor x, Tensor gate, Tensor a, Tensor b, Tensor y,
        int adapters, int rank, int topK, double temperature)
    {
        using var scope = NewDisposeScope();
        int N = (int)x.shape[0], inF = (int)x.shape[1], L = adapters, R = adapters * rank;
        if (x.dtype != ScalarType.BFloat16 || x.dim() != 2 || inF % 8 != 0 || !Aligned(x) || gate.dtype != ScalarType.Float32
            || !gate.is_contiguous() || !Aligned(gate) || gate.shape[0] != L || gate.shape[1] != inF || a.dtype != ScalarType.BFloat16
            || !a.is_contiguous() || !Aligned(a) || a.shape[0] != R || a.shape[1] != inF)
            throw new ArgumentException($"selective mix: x {string.Join('×', x.shape)} {x.dtype}, gate {string.Join('×', gate.shape)} {gate.dtype} and " +
                $"A {string.Join('×', a.shape)} {a.dtype} do not fit {L} adapters of rank {rank} on 16-byte aligned rows of a multiple of 8 inputs");
        var h = empty(N, L + R, ScalarType.Float32, x.device);                             // (N, L + ΣR)
        IntPtr xp = DeviceMemory.Address(x), gp = DeviceMemory.Address(gate), ap = DeviceMemory.Address(a), hp = DeviceMemory.Address(h);
        long xs = x.stride(0);
        void** shrink = stackalloc void*[9];
        shrink[0] = &xp; shrink[1] = &xs; shrink[2] = &N; shrink[3] = &inF; shrink[4] = &gp; shrink[5] = &L;
        shrink[6] = &ap; shrink[7] = &R; shrink[8] = &hp;
        kernels.Shrink.Launch((uint)((L + R) * ((N + TokensPerShrinkBlock - 1) / TokensPerShrinkBlock)), ShrinkThreadsFor(inF), shrink);
        Expand(kernels.Expand, h, b, y, adapters, rank, topK, temperature);
    }

    /// <summary>
    /// The expand alone: ranks each token's gate logits in <paramref name="h"/> (N, L + L·r) float32 contiguous (logits,
    /// then rank values: the shrink's or <c>Llama.DecodeGemv</c>'s output) and adds the chosen adapters' contribution
    /// into y (N, out) bfloat16; b (out, L·r) bfloat16 contiguous.
    /// </summary>
    public static void Expand(CudaKernel expand, Tensor h, Tensor b, Tensor y, int adapters, int rank, int topK, double temperature) =>
        ExpandGroup(expand, [new ExpandPart(h, b, y, adapters, rank, topK, temperature)]);

    /// <summary>One projection's part of a grouped expand: as the arguments of <see cref="Expand"/>.</summary>
    internal readonly record struct ExpandPart(Tensor H, Tensor B, Tensor Y, int Adapters, int Rank, int TopK, double Temperature);

    /// <summary>The expand of up to three projections (q, k and v decoded together) in one launch.</summary>
    public static void ExpandGroup(CudaKernel expand, IReadOnlyList<ExpandPart> parts)
    {
        if (parts.Count is < 1 or > 3) throw new ArgumentException($"selective mix: {parts.Count} projections in one expand (1…3)");
        ExpandSegments args = default;
        int blocks = 0;
        for (int i = 0; i < parts.Count; i++)
        {
            var (h, b, y, L, r, k, temperature) = parts[i];
            int outF = (int)y.shape[1], N = (int)y.shape[0];
            if (h.dtype != ScalarType.Float32 || !h.is_contiguous() || h.shape[0] != N || h.shape[1] != L + L * r)
                throw new ArgumentException($"selective mix: h {string.Join('×', h.shape)} {h.dtype} does not fit {N} tokens of {L} adapters of rank {r}");
            if (L < 1 || L > RoutingKernel.MaxAdapters || k < 1 || k > Math.Min(L, RoutingKernel.MaxTopK) || r < 1 || r > MaxRank)
                throw new ArgumentException($"selective mix: top-{k} of {L} adapters of rank {r} (1 ≤ k ≤ min(L, {RoutingKernel.MaxTopK}), L ≤ {RoutingKernel.MaxAdapters}, r ≤ {MaxRank})");
            if (b.dtype != ScalarType.BFloat16 || !b.is_contiguous() || b.shape[0] != outF || b.shape[1] != L * r || y.dtype != ScalarType.BFloat16 || y.stride(1) != 1)
                throw new ArgumentException($"selective mix: B {string.Join('×', b.shape)} {b.dtype} and y {string.Join('×', y.shape)} {y.dtype} do not fit {L} adapters of rank {r}");
            var seg = new ExpandSegment
            {
                Y = DeviceMemory.Address(y), H = DeviceMemory.Address(h), B = DeviceMemory.Address(b), Ys = y.stride(0),
                Out = outF, L = L, R = r, K = k, InvT = (float)(1.0 / temperature), BlockStart = blocks,
            };
            if (i == 0) args.S0 = seg; else if (i == 1) args.S1 = seg; else args.S2 = seg;
            blocks += N * ((outF + ExpandThreads - 1) / ExpandThreads);
        }
        args.Count = parts.Count;
        void** p = stackalloc void*[1];
        p[0] = &args;
        expand.Launch((uint)blocks, ExpandThreads, p);
    }

    // The kernel's ExpandSegment and ExpandSegments, field for field (C layout).
    [StructLayout(LayoutKind.Sequential)]
    internal struct ExpandSegment
    {
        public IntPtr Y, H, B;
        public long Ys;
        public int Out, L, R, K;
        public float InvT;
        public int BlockStart;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct ExpandSegments
    {
        public ExpandSegment S0, S1, S2;
        public int Count;
    }

    /// <summary>Whether <paramref name="t"/>'s data and rows are 16-byte aligned, as the kernels' vector loads need.</summary>
    public static bool Aligned(Tensor t) =>
        DeviceMemory.Address(t) % 16 == 0 && (t.dim() < 2 || t.stride(0) * t.ElementSize % 16 == 0) && t.stride(-1) == 1;
}
