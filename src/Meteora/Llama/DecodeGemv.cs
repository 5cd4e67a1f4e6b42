using System.Runtime.InteropServices;
using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Llama;

/// <summary>
/// One token's projections as NVRTC matrix-vector launches (issue #17): at decode batch 1 every projection of the
/// step streams its weight once, which cuBLAS's GEMM kernels do at 43–87 % of an H200's bandwidth and this kernel at
/// 75–97 % (bench/probe/gemv_variants.py). Used for plain projections, the fused q/k/v buffer, gate and up together and
/// the LM head (<see cref="Linear"/>), and by <c>Moe.MeteoraLinear</c>, where the same launch also computes the
/// float32 gate logits and rank values <c>h = x [G; A_all]ᵀ</c> (1, L + ΣR) that the expand kernel
/// (<c>Moe.SelectiveMixKernel</c>) routes on.
/// <para>
/// A warp owns four rows and shares them with a second warp (each takes half of every row); each lane keeps two
/// 16-byte loads of each of its four rows in flight, with the streaming cache hint (each weight byte is read once a
/// step), multiplies in float32, and the two warps' sums meet in shared memory and are rounded once to bfloat16 as cuBLAS
/// rounds (the summation order differs, so a result can differ from the GEMM's in the last bfloat16 bit). The layout
/// was chosen on an H200 among 192 variants (rows per warp 1–4, loads in flight 2–8, streaming or not, x through L1
/// or shared memory, 1–4 warps per row, 4 or 8 warps per block): over one decode step's projections at LLaMA-3-8B
/// shapes this one took 3.57 ms against cuBLAS's 3.93 (docs/BENCHMARKS.md). An earlier kernel that kept eight tokens'
/// sums and eight loads per lane used 128 registers and reached 44–60 % of the bandwidth: slower than cuBLAS.
/// </para>
/// From two tokens on a GEMM reads the weight once for all of them; this kernel takes one.
/// <c>METEORA_DECODE_GEMV=off</c> (or <see cref="Enabled"/> = false) keeps cuBLAS (and MeteoRA's shrink kernel).
/// </summary>
internal static unsafe class DecodeGemv
{
    /// <summary>The tokens (rows of the input) the kernel takes.</summary>
    public const int MaxTokens = 1;
    private const int Warps = 4, RowsPerBlock = 8, MaxKernelSegments = 9;

    internal const string Source = Bf16Device.Prelude + """
        #define RPW 4       // rows per warp
        #define UNR 2       // 16-byte loads per row and lane in flight at once
        #define SPLIT 2     // warps sharing a row, each a contiguous half of it
        #define WARPS 4     // per block: (WARPS / SPLIT) · RPW = 8 rows
        #define MAXSEG 9

        // RPW rows of M (16-byte loads, streamed: each weight byte is read once a step) against x, over the inputs
        // [8·k0, 8·k1), into acc. F32: float32 rows (a MeteoRA gate), two loads per 8 inputs; else bfloat16 rows.
        template <bool F32>
        __device__ __forceinline__ void dotRows(const char* M, long long ldBytes, int row0, int rows, const uint4* x8,
                                                int k0, int k1, int lane, float* acc)
        {
            enum { V = F32 ? 2 : 1, U = UNR };
            for (int base = k0; base < k1; base += 32 * U) {
                uint4 wv[RPW][U][V];
                #pragma unroll
                for (int u = 0; u < U; u++) {
                    int c = base + u * 32 + lane;
                    #pragma unroll
                    for (int r = 0; r < RPW; r++) {
                        #pragma unroll
                        for (int v = 0; v < V; v++)
                            wv[r][u][v] = c < k1 && row0 + r < rows
                                ? __ldcs((const uint4*)(M + (long long)(row0 + r) * ldBytes) + (long long)c * V + v) : make_uint4(0, 0, 0, 0);
                    }
                }
                #pragma unroll
                for (int u = 0; u < U; u++) {
                    int c = base + u * 32 + lane;
                    if (c < k1) {
                        float xf[8];
                        unpack8(__ldg(x8 + c), xf);
                        #pragma unroll
                        for (int r = 0; r < RPW; r++) {
                            float f[8];
                            if (F32) {
                                f[0] = __uint_as_float(wv[r][u][0].x); f[1] = __uint_as_float(wv[r][u][0].y);
                                f[2] = __uint_as_float(wv[r][u][0].z); f[3] = __uint_as_float(wv[r][u][0].w);
                                f[4] = __uint_as_float(wv[r][u][V - 1].x); f[5] = __uint_as_float(wv[r][u][V - 1].y);
                                f[6] = __uint_as_float(wv[r][u][V - 1].z); f[7] = __uint_as_float(wv[r][u][V - 1].w);
                            } else unpack8(wv[r][u][0], f);
                            #pragma unroll
                            for (int j = 0; j < 8; j++) acc[r] = fmaf(f[j], xf[j], acc[r]);
                        }
                    }
                }
            }
        }

        // One token x (in) bfloat16 against the rows of up to MAXSEG segments (matrices `in` wide: a projection's
        // base rows, a MeteoRA gate, its stacked A), rows ld elements apart and 16-byte aligned. A block belongs to
        // one segment (from its blockStart on) and computes 8 rows. kind bit 0: float32 rows (else bfloat16); bit 1:
        // float32 out (else bfloat16, rounded once as cuBLAS rounds).
        struct GemvSegment { const void* M; void* out; long long ld; int rows; int kind; int blockStart; };
        struct GemvSegments { GemvSegment s[MAXSEG]; int count; };

        extern "C" __global__ void __launch_bounds__(32 * WARPS) meteora_gemv_bf16(const bf16* x, int in, GemvSegments segs)
        {
            // The block's segment, read with constant indices (a dynamic index would copy the parameter to local memory).
            const void* M = segs.s[0].M; void* out = segs.s[0].out; long long ld = segs.s[0].ld;
            int rows = segs.s[0].rows, kind = segs.s[0].kind, start = 0;
            #pragma unroll
            for (int i = 1; i < MAXSEG; i++)
                if (i < segs.count && (int)blockIdx.x >= segs.s[i].blockStart) {
                    M = segs.s[i].M; out = segs.s[i].out; ld = segs.s[i].ld; rows = segs.s[i].rows; kind = segs.s[i].kind; start = segs.s[i].blockStart;
                }
            __shared__ float part[WARPS][RPW];
            int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
            int row0 = (((int)blockIdx.x - start) * (WARPS / SPLIT) + warp / SPLIT) * RPW, s = warp % SPLIT;
            int n8 = in >> 3, span = n8 / SPLIT, k0 = s * span, k1 = s == SPLIT - 1 ? n8 : k0 + span;
            float acc[RPW];
            #pragma unroll
            for (int r = 0; r < RPW; r++) acc[r] = 0.f;
            if (row0 < rows) {
                if (kind & 1) dotRows<true>((const char*)M, ld * 4, row0, rows, (const uint4*)x, k0, k1, lane, acc);
                else dotRows<false>((const char*)M, ld * 2, row0, rows, (const uint4*)x, k0, k1, lane, acc);
            }
            #pragma unroll
            for (int r = 0; r < RPW; r++) {
                float v = acc[r];
                #pragma unroll
                for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
                if (lane == 0) part[warp][r] = v;
            }
            __syncthreads();
            if (s == 0 && lane < RPW && row0 + lane < rows) {
                float v = 0.f;
                #pragma unroll
                for (int j = 0; j < SPLIT; j++) v += part[warp + j][lane];
                if (kind & 2) ((float*)out)[row0 + lane] = v;
                else ((bf16*)out)[row0 + lane] = f2bf(v);
            }
        }

        """;

    private static readonly CudaKernelCache Kernels = new(Source, "decode GEMV kernel", "cuBLAS GEMM and the shrink kernel", "decode GEMV kernel");

    /// <summary>Whether one-token bfloat16 projections on CUDA (plain, MeteoRA, the LM head) may use the kernel (default true; <c>METEORA_DECODE_GEMV=off</c> keeps cuBLAS, and MeteoRA's shrink).</summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("METEORA_DECODE_GEMV") is not ("off" or "0" or "false");

    /// <summary>What one-token projections (and MeteoRA's base rows and gate) use on <paramref name="device"/>, and why.</summary>
    public static string Describe(Device device)
    {
        if (device.type != DeviceType.CUDA) return "ATen GEMM (CPU)";
        if (!Enabled) return "cuBLAS GEMM (decode GEMV kernel switched off)";
        Kernel(device, out var status);
        return $"{status}, {MaxTokens} token";
    }

    private static CudaKernel? Kernel(Device device, out string status) =>
        Kernels.Get(device.index < 0 ? 0 : device.index, "meteora_gemv_bf16", out status);

    /// <summary>
    /// Whether the kernel takes x (N, in) against weight rows <paramref name="w"/> (rows, in): bfloat16 on one CUDA
    /// device, 1 ≤ N ≤ <see cref="MaxTokens"/>, in a multiple of 8, at least one weight row, unit column strides and 16-byte aligned rows, no
    /// gradient wanted, the kernel built here.
    /// </summary>
    public static bool Applies(Tensor x2, Tensor w)
    {
        if (!Enabled || x2.device_type != DeviceType.CUDA || x2.dtype != ScalarType.BFloat16 || w.dtype != ScalarType.BFloat16
            || x2.dim() != 2 || x2.shape[0] < 1 || x2.shape[0] > MaxTokens || x2.shape[1] % 8 != 0 || w.dim() != 2 || w.shape[0] < 1 || w.shape[1] != x2.shape[1]
            || x2.device_index != w.device_index || !Aligned(x2) || !Aligned(w)
            || is_grad_enabled() && (w.requires_grad || x2.requires_grad))
            return false;
        return Kernel(x2.device, out _) is not null;
    }

    /// <summary>
    /// y = x wᵀ for x (…, in) and w (out, in): through the kernel when x is one token it <see cref="Applies"/> to, else
    /// ATen's linear (cuBLAS, or the CPU's GEMM). Returns (…, out).
    /// </summary>
    public static Tensor Project(Tensor x, Tensor w)
    {
        if (x.device_type == DeviceType.CUDA && x.numel() == x.shape[^1] && x.numel() > 0)
        {
            using var scope = NewDisposeScope();
            var x2 = x.reshape(1, x.shape[^1]);                                              // (1, in)
            if (Applies(x2, w))
                return Apply(x2, w).view([.. x.shape[..^1], w.shape[0]]).MoveToOuterDisposeScope();
        }
        return nn.functional.linear(x, w);
    }

    /// <summary>
    /// Several projections of one input x (…, in) (gate and up): each y = x wᵀ (…, out) in one launch when x is one
    /// token the kernel <see cref="Applies"/> to for every weight, else null (the caller runs them as it would).
    /// </summary>
    public static Tensor[]? TryProjectGroup(Tensor x, IReadOnlyList<Tensor> weights)
    {
        if (x.device_type != DeviceType.CUDA || x.numel() != x.shape[^1] || x.numel() == 0 || weights.Count is < 1 or > MaxSegments)
            return null;
        using var scope = NewDisposeScope();
        var x2 = x.reshape(1, x.shape[^1]);                                                  // (1, in)
        if (!weights.All(w => Applies(x2, w))) return null;
        var outputs = ApplyGroup(x2, weights.Select(w => new Segment(w, null, null)).ToList());
        return outputs.Select(o => o.Y.view([.. x.shape[..^1], o.Y.shape[1]]).MoveToOuterDisposeScope()).ToArray();
    }

    /// <summary>y = x wᵀ (1, rows) bfloat16, for inputs <see cref="Applies"/> accepted.</summary>
    public static Tensor Apply(Tensor x2, Tensor w) => ApplyGroup(x2, [new Segment(w, null, null)])[0].Y;

    /// <summary>
    /// MeteoRA's decode pass in one launch: y = x wᵀ (1, rows) bfloat16 and h = x [gate; a]ᵀ (1, L + ΣR) float32, for
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
    /// Up to <see cref="MaxSegments"/> projections of the same one-token input x (1, in) in one launch (q, k and v; gate
    /// and up): per segment y = x wᵀ (1, rows) bfloat16 and, when it has a gate, h = x [gate; a]ᵀ (1, L + ΣR) float32.
    /// Every weight must pass <see cref="Applies"/>; gates float32 and A bfloat16, contiguous and aligned.
    /// </summary>
    public static (Tensor Y, Tensor? H)[] ApplyGroup(Tensor x2, IReadOnlyList<Segment> segments)
    {
        if (segments.Count is < 1 or > MaxSegments) throw new ArgumentException($"decode GEMV: {segments.Count} projections in one launch (1…{MaxSegments})");
        if (x2.dim() != 2 || x2.shape[0] != 1 || x2.dtype != ScalarType.BFloat16 || x2.shape[1] % 8 != 0 || !Aligned(x2))
            throw new ArgumentException($"decode GEMV: input {string.Join('×', x2.shape)} {x2.dtype} is not one aligned bfloat16 token, a multiple of 8 wide");
        var kernel = Kernel(x2.device, out var status) ?? throw new MeteoraException($"decode GEMV: {status}");
        int inF = (int)x2.shape[1];
        var results = new (Tensor Y, Tensor? H)[segments.Count];
        var kernelSegments = new List<GemvSegment>(MaxKernelSegments);
        int blocks = 0;
        void Add(Tensor m, IntPtr output, int kind)
        {
            kernelSegments.Add(new GemvSegment { M = DeviceMemory.Address(m), Out = output, Ld = m.stride(0), Rows = (int)m.shape[0], Kind = kind, BlockStart = blocks });
            blocks += ((int)m.shape[0] + RowsPerBlock - 1) / RowsPerBlock;
        }
        for (int i = 0; i < segments.Count; i++)
        {
            var (w, gate, a) = segments[i];
            if (w.dtype != ScalarType.BFloat16 || w.dim() != 2 || w.shape[1] != inF || !Aligned(w) || w.device_index != x2.device_index)
                throw new ArgumentException($"decode GEMV: weight {string.Join('×', w.shape)} {w.dtype} does not fit inputs {inF} wide");
            if (gate is not null && (a is null || gate.dtype != ScalarType.Float32 || a.dtype != ScalarType.BFloat16 || !gate.is_contiguous()
                || !a.is_contiguous() || !Aligned(gate) || !Aligned(a) || gate.shape[1] != inF || a.shape[1] != inF))
                throw new ArgumentException($"decode GEMV: gate {string.Join('×', gate.shape)} {gate.dtype} and adapters {(a is null ? "none" : $"{string.Join('×', a.shape)} {a.dtype}")} do not fit inputs {inF} wide");
            var y = empty(1, w.shape[0], ScalarType.BFloat16, x2.device);                          // (1, rows)
            Tensor? h = null;
            if (gate is not null)
            {
                h = empty(1, gate.shape[0] + a!.shape[0], ScalarType.Float32, x2.device);            // (1, L + ΣR)
                // Gate and A rows first: small, they finish under the base rows' stream.
                Add(gate, DeviceMemory.Address(h), kind: 1 | 2);
                if (a.shape[0] > 0) Add(a, DeviceMemory.Address(h) + (nint)(gate.shape[0] * sizeof(float)), kind: 2);
            }
            Add(w, DeviceMemory.Address(y), kind: 0);
            results[i] = (y, h);
        }
        GemvSegments args = default;
        for (int i = 0; i < kernelSegments.Count; i++) args.S[i] = kernelSegments[i];
        args.Count = kernelSegments.Count;
        IntPtr xp = DeviceMemory.Address(x2);
        void** p = stackalloc void*[3];
        p[0] = &xp; p[1] = &inF; p[2] = &args;
        kernel.Launch((uint)blocks, 32 * Warps, p);
        return results;
    }

    // The kernel's GemvSegment and GemvSegments, field for field (C layout: pointers and 64-bit integers 8-aligned).
    [StructLayout(LayoutKind.Sequential)]
    internal struct GemvSegment
    {
        public IntPtr M, Out;
        public long Ld;
        public int Rows, Kind, BlockStart;
    }

    [System.Runtime.CompilerServices.InlineArray(MaxKernelSegments)]
    internal struct GemvSegmentArray
    {
        private GemvSegment _first;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct GemvSegments
    {
        public GemvSegmentArray S;
        public int Count;
    }

    /// <summary>Unit column stride and 16-byte aligned data and rows, as the kernel's vector loads need.</summary>
    private static bool Aligned(Tensor t) =>
        t.stride(-1) == 1 && DeviceMemory.Address(t) % 16 == 0 && (t.dim() < 2 || t.stride(0) * t.ElementSize % 16 == 0);
}
