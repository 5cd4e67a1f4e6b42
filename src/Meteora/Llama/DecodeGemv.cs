using System.Runtime.InteropServices;
using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Llama;

/// <summary>
/// MeteoRA's base rows, float32 gate logits and rank values of one token in one NVRTC matrix-vector launch (issue #17
/// item 3; used by <c>Moe.MeteoraLinear</c> at decode batch 1): <c>y = x Wᵀ</c> (1, out) in bfloat16 and
/// <c>h = x [G; A_all]ᵀ</c> (1, L + ΣR) in float32, reading x once, so a MeteoRA projection is this launch and the
/// expand kernel (<c>Moe.SelectiveMixKernel</c>) instead of cuBLAS, the shrink and the expand.
/// <para>
/// Rows are split over one to eight warps of a block (<see cref="GroupFor"/>); each lane issues up to eight 16-byte
/// loads of its row (and of x) at once, multiplies in float32, the warps' sums meet in shared memory and are rounded
/// once to bfloat16 as cuBLAS rounds (the summation order differs, so a result can differ from the GEMM's in the last
/// bfloat16 bit). Gate rows go first (their float32 rows take twice the reads).
/// </para>
/// <para>
/// Why only there: on an H200 (docs/BENCHMARKS.md "MeteoRA at decode reads only what it uses") this kernel streams a
/// plain 8B-shaped projection at 46–60 % of the memory bandwidth under Nsight Compute against cuBLAS's 55–77 %
/// (a first version with one warp per row reached 25–48 %), so the base decode step was slower with it (6.62 against
/// 6.21 ms at batch 1), and from two tokens on its per-token loads of x made it far slower (19.1 against 6.8 ms at
/// batch 8). For a MeteoRA projection the launch and the shrink it saves outweigh that: top-2 decode at batch 1
/// 8.73 against 9.14 ms. So it takes one token and MeteoRA only; the kernel itself accepts up to eight tokens.
/// </para>
/// <c>METEORA_DECODE_GEMV=off</c> (or <see cref="Enabled"/> = false) keeps cuBLAS and the shrink kernel.
/// </summary>
internal static unsafe class DecodeGemv
{
    /// <summary>The most tokens (rows of the input) the paths hand the kernel (it takes up to eight; see the class remarks).</summary>
    public const int MaxTokens = 1;
    private const int WarpsPerBlock = 8;

    internal const string Source = Bf16Device.Prelude + """
        #define TOK 8
        #define UNROLL 8


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

        // Rows of [G (L, float32); W (Rw, bfloat16, rows ldw apart); A (R, bfloat16)] of up to MAXSEG segments (projections
        // of the same input, e.g. q, k and v), all `in` wide, rows 16-byte aligned; a block belongs to one segment (from
        // its blockStart on). Each row is split over `group` warps of one block (group divides 8, in a multiple of
        // 8·group), each warp taking in/group contiguous inputs with up to UNROLL 16-byte loads per lane in flight at
        // once (for one token also x's, so nothing waits between them). x (N ≤ TOK, in) bfloat16, rows xs apart.
        // Per segment: y (N, Rw) bfloat16, rows ys apart: x Wᵀ; h (N, L + R) float32: x Gᵀ then x Aᵀ (unused when L + R = 0).
        #define MAXSEG 3
        struct GemvSegment { const float* G; const bf16* W; const bf16* A; bf16* y; float* h; long long ldw; long long ys;
                             int L; int Rw; int R; int blockStart; };
        struct GemvSegments { GemvSegment s[MAXSEG]; int count; };

        extern "C" __global__ void meteora_gemv_bf16(const bf16* x, long long xs, int N, int in, int group, GemvSegments segs)
        {
            int si = 0;
            #pragma unroll
            for (int i = 1; i < MAXSEG; i++) if (i < segs.count && (int)blockIdx.x >= segs.s[i].blockStart) si = i;
            const float* G = segs.s[si].G; const bf16* W = segs.s[si].W; const bf16* A = segs.s[si].A;
            bf16* y = segs.s[si].y; float* h = segs.s[si].h; long long ldw = segs.s[si].ldw, ys = segs.s[si].ys;
            int L = segs.s[si].L, Rw = segs.s[si].Rw, R = segs.s[si].R, block = blockIdx.x - segs.s[si].blockStart;
            __shared__ float part[8][TOK];
            int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
            int row = block * (8 / group) + warp / group, g = warp % group;
            bool live = row < L + Rw + R;
            float acc[TOK];
            #pragma unroll
            for (int t = 0; t < TOK; t++) acc[t] = 0.f;
            int span = in / group, k0 = g * span, k1 = k0 + span;
            if (live && row < L) {
                // A float32 gate row: UNROLL/2 chunks of 8 per pass (two 16-byte loads each).
                const float* gr = G + (long long)row * in;
                for (int base = k0; base < k1; base += 256 * (UNROLL / 2)) {
                    float4 lo[UNROLL / 2], hi[UNROLL / 2];
                    #pragma unroll
                    for (int i = 0; i < UNROLL / 2; i++) {
                        int c = base + (i * 32 + lane) * 8;
                        if (c < k1) { lo[i] = *(const float4*)(gr + c); hi[i] = *(const float4*)(gr + c + 4); }
                    }
                    #pragma unroll
                    for (int i = 0; i < UNROLL / 2; i++) {
                        int c = base + (i * 32 + lane) * 8;
                        if (c < k1) {
                            float f[8] = { lo[i].x, lo[i].y, lo[i].z, lo[i].w, hi[i].x, hi[i].y, hi[i].z, hi[i].w };
                            dot8(x, xs, N, c, f, acc);
                        }
                    }
                }
            } else if (live) {
                const bf16* wr = row < L + Rw ? W + (long long)(row - L) * ldw : A + (long long)(row - L - Rw) * in;
                for (int base = k0; base < k1; base += 256 * UNROLL) {
                    uint4 wv[UNROLL], xv[UNROLL];
                    #pragma unroll
                    for (int i = 0; i < UNROLL; i++) {
                        int c = base + (i * 32 + lane) * 8;
                        if (c < k1) {
                            wv[i] = *(const uint4*)(wr + c);
                            if (N == 1) xv[i] = *(const uint4*)(x + c);
                        }
                    }
                    #pragma unroll
                    for (int i = 0; i < UNROLL; i++) {
                        int c = base + (i * 32 + lane) * 8;
                        if (c < k1) {
                            float f[8];
                            unpack8(wv[i], f);
                            if (N == 1) {
                                float xf[8];
                                unpack8(xv[i], xf);
                                #pragma unroll
                                for (int j = 0; j < 8; j++) acc[0] = fmaf(f[j], xf[j], acc[0]);
                            } else dot8(x, xs, N, c, f, acc);
                        }
                    }
                }
            }
            #pragma unroll
            for (int t = 0; t < TOK; t++) {
                float v = acc[t];
                #pragma unroll
                for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
                if (lane == 0) part[warp][t] = v;
            }
            __syncthreads();
            if (live && g == 0 && lane < N) {
                float v = 0.f;
                for (int j = 0; j < group; j++) v += part[warp + j][lane];
                if (row >= L && row < L + Rw) y[(long long)lane * ys + row - L] = f2bf(v);
                else h[(long long)lane * (L + R) + (row < L ? row : row - Rw)] = v;
            }
        }
        """;

    private static readonly CudaKernelCache Kernels = new(Source, "decode GEMV kernel", "cuBLAS GEMM and the shrink kernel", "decode GEMV kernel");

    /// <summary>Whether MeteoRA's one-token projections may use the kernel (default true; <c>METEORA_DECODE_GEMV=off</c> keeps cuBLAS and the shrink).</summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("METEORA_DECODE_GEMV") is not ("off" or "0" or "false");

    /// <summary>What MeteoRA's one-token projections use on <paramref name="device"/> for their base rows and gate, and why.</summary>
    public static string Describe(Device device)
    {
        if (device.type != DeviceType.CUDA) return "ATen GEMM (CPU)";
        if (!Enabled) return "cuBLAS GEMM and the shrink kernel (decode GEMV kernel switched off)";
        Kernel(device, out var status);
        return $"{status}, {MaxTokens} token";
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
    public static Tensor Apply(Tensor x2, Tensor w) => ApplyGroup(x2, [new Segment(w, null, null)])[0].Y;

    /// <summary>
    /// MeteoRA's decode pass in one launch: y = x wᵀ (N, rows) bfloat16 and h = x [gate; a]ᵀ (N, L + ΣR) float32, for
    /// <paramref name="gate"/> (L, in) float32 and <paramref name="a"/> (ΣR, in) bfloat16, contiguous and aligned.
    /// </summary>
    public static (Tensor Y, Tensor H) ApplyWithAdapters(Tensor x2, Tensor w, Tensor gate, Tensor a)
    {
        var (y, h) = ApplyGroup(x2, [new Segment(w, gate, a)])[0];
        return (y, h!);
    }

    /// <summary>One projection of a group: weight rows (rows, in) bfloat16 and, for MeteoRA, its float32 gate and stacked A.</summary>
    internal readonly record struct Segment(Tensor W, Tensor? Gate, Tensor? A);

    /// <summary>The most projections one launch takes (q, k and v).</summary>
    public const int MaxSegments = 3;

    /// <summary>
    /// Up to <see cref="MaxSegments"/> projections of the same input x (N, in) in one launch (q, k and v; gate and up):
    /// per segment y = x wᵀ (N, rows) bfloat16 and, when it has a gate, h = x [gate; a]ᵀ (N, L + ΣR) float32.
    /// Every weight must pass <see cref="Applies"/>; gates float32 and A bfloat16, contiguous and aligned.
    /// </summary>
    public static (Tensor Y, Tensor? H)[] ApplyGroup(Tensor x2, IReadOnlyList<Segment> segments)
    {
        if (segments.Count is < 1 or > MaxSegments) throw new ArgumentException($"decode GEMV: {segments.Count} projections in one launch (1…{MaxSegments})");
        var kernel = Kernel(x2.device, out var status) ?? throw new MeteoraException($"decode GEMV: {status}");
        int N = (int)x2.shape[0], inF = (int)x2.shape[1], group = GroupFor(inF), rowsPerBlock = WarpsPerBlock / group;
        var results = new (Tensor Y, Tensor? H)[segments.Count];
        GemvSegments args = default;
        int blocks = 0;
        for (int i = 0; i < segments.Count; i++)
        {
            var (w, gate, a) = segments[i];
            if (gate is not null && (a is null || gate.dtype != ScalarType.Float32 || a.dtype != ScalarType.BFloat16 || !gate.is_contiguous()
                || !a.is_contiguous() || !Aligned(gate) || !Aligned(a) || gate.shape[1] != inF || a.shape[1] != inF))
                throw new ArgumentException($"decode GEMV: gate {string.Join('×', gate.shape)} {gate.dtype} and adapters {(a is null ? "none" : $"{string.Join('×', a.shape)} {a.dtype}")} do not fit inputs {inF} wide");
            var y = empty(N, w.shape[0], ScalarType.BFloat16, x2.device);                         // (N, rows)
            var h = gate is null ? null : empty(N, gate.shape[0] + a!.shape[0], ScalarType.Float32, x2.device);   // (N, L + ΣR)
            results[i] = (y, h);
            int L = gate is null ? 0 : (int)gate.shape[0], R = a is null || gate is null ? 0 : (int)a.shape[0], Rw = (int)w.shape[0];
            var seg = new GemvSegment
            {
                G = gate is null ? IntPtr.Zero : DeviceMemory.Address(gate), W = DeviceMemory.Address(w),
                A = R == 0 ? IntPtr.Zero : DeviceMemory.Address(a!), Y = DeviceMemory.Address(y), H = h is null ? IntPtr.Zero : DeviceMemory.Address(h),
                Ldw = w.stride(0), Ys = y.stride(0), L = L, Rw = Rw, R = R, BlockStart = blocks,
            };
            if (i == 0) args.S0 = seg; else if (i == 1) args.S1 = seg; else args.S2 = seg;
            blocks += (L + Rw + R + rowsPerBlock - 1) / rowsPerBlock;
        }
        args.Count = segments.Count;
        IntPtr xp = DeviceMemory.Address(x2);
        long xs = x2.stride(0);
        void** p = stackalloc void*[6];
        p[0] = &xp; p[1] = &xs; p[2] = &N; p[3] = &inF; p[4] = &group; p[5] = &args;
        kernel.Launch((uint)blocks, 32 * WarpsPerBlock, p);
        return results;
    }

    // The kernel's GemvSegment and GemvSegments, field for field (C layout: pointers and 64-bit integers 8-aligned).
    [StructLayout(LayoutKind.Sequential)]
    internal struct GemvSegment
    {
        public IntPtr G, W, A, Y, H;
        public long Ldw, Ys;
        public int L, Rw, R, BlockStart;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct GemvSegments
    {
        public GemvSegment S0, S1, S2;
        public int Count;
    }

    /// <summary>
    /// Warps per row: about 2 048 inputs each (a pass of eight 16-byte loads per lane), 1, 2, 4 or 8, and
    /// <paramref name="inFeatures"/> a multiple of 8 per warp (1 otherwise). Short passes spread a long row (the down
    /// projection's 14 336 inputs) over several warps instead of one warp waiting for memory seven times in a row.
    /// </summary>
    internal static int GroupFor(int inFeatures)
    {
        int group = 1;
        while (group < WarpsPerBlock && inFeatures / group > 2048 && inFeatures % (16 * group) == 0) group *= 2;
        return group;
    }

    /// <summary>Unit column stride and 16-byte aligned data and rows, as the kernel's vector loads need.</summary>
    private static bool Aligned(Tensor t) =>
        t.stride(-1) == 1 && DeviceMemory.Address(t) % 16 == 0 && (t.dim() < 2 || t.stride(0) * t.ElementSize % 16 == 0);
}
