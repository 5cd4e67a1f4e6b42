using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Llama;

/// <summary>
/// The decoder layer's elementwise work in one launch each, for bfloat16 inference on CUDA (issue #17): RMSNorm (with
/// the residual add before it), rotary embedding of q and k together, and SiLU(gate)·up. In ATen these are 8, 2 × 5 and
/// 2 launches of tiny kernels per use; at decode sizes each launch costs far more than its bytes, and an 8B model runs
/// ~37 of them per layer per step. Compiled at first use with NVRTC (<see cref="Nvrtc"/>) like the routing kernel and
/// launched on libtorch's current stream, so CUDA graphs capture them.
/// <para>
/// Numerics follow the ATen chain they replace, rounding to bfloat16 where it rounds: the residual sum, the
/// normalised activations before the weight multiply, each rotary product before the add, SiLU before the multiply;
/// reductions (the RMS) run in float32 in another order, so results can differ from ATen's in the last bfloat16 bit.
/// Used only where no autograd graph is needed (no input requires grad, or grad mode is off), on bfloat16 CUDA tensors
/// whose rows are contiguous (the rows themselves may be strided: a MeteoRA projection's output is a column slice of
/// its fused GEMM's output, see <see cref="RowStride"/>); everything else — CPU, float32/float16, training — takes the ATen path unchanged.
/// <c>METEORA_FUSED_KERNELS=off</c> (or <see cref="Enabled"/> = false) keeps ATen everywhere, e.g. to compare.
/// </para>
/// </summary>
internal static unsafe class FusedKernels
{
    private const int NormThreads = 256, ElementThreads = 256;

    /// <summary>Whether aligned rows of whole 16-byte chunks use the vector RMSNorm kernel (default true; <c>METEORA_VECTOR_NORM=off</c> keeps the column loop).</summary>
    internal static bool VectorNorm { get; set; } = Environment.GetEnvironmentVariable("METEORA_VECTOR_NORM") is not ("off" or "0" or "false");

    /// <summary>
    /// Whether aligned rows of whole 16-byte chunks use the eight-columns-per-thread SiLU·up kernel (default true, the same
    /// bits as the one-element kernel; <c>METEORA_VECTOR_SILU=off</c> keeps that one). Not yet timed on a GPU.
    /// </summary>
    internal static bool VectorSilu { get; set; } = Environment.GetEnvironmentVariable("METEORA_VECTOR_SILU") is not ("off" or "0" or "false");

    internal const string Source = Bf16Device.Prelude + """
        // The block's sum of each thread's v (every thread gets it); partial: 32 floats of shared memory.
        __device__ __forceinline__ float block_sum(float v, float* partial)
        {
            #pragma unroll
            for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
            int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = (blockDim.x + 31) >> 5;
            if (lane == 0) partial[warp] = v;
            __syncthreads();
            if (warp == 0) {
                v = lane < warps ? partial[lane] : 0.f;
                #pragma unroll
                for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
                if (lane == 0) partial[0] = v;
            }
            __syncthreads();
            return partial[0];
        }

        // One block per row. x (rows, cols) with row stride xs, res likewise with rs (a column slice of a wider GEMM
        // output is fine); sum and out are contiguous. With res: s = bf16(x + res) is written to sum and normalised,
        // else s = x. out = bf16(w · bf16(s · rsqrt(mean(s²) + eps))), as transformers' LlamaRMSNorm in bfloat16.
        extern "C" __global__ void meteora_rmsnorm_bf16(const bf16* x, long long xs, const bf16* res, long long rs, bf16* sum,
                                                        bf16* out, const bf16* w, int rows, int cols, float eps)
        {
            __shared__ float partial[32];
            int row = blockIdx.x;
            if (row >= rows) return;
            const bf16* xr = x + (long long)row * xs;
            const bf16* rr = res != 0 ? res + (long long)row * rs : 0;
            bf16* sr = sum != 0 ? sum + (long long)row * cols : 0;
            float acc = 0.f;
            for (int c = threadIdx.x; c < cols; c += blockDim.x) {
                float v = bf2f(xr[c]);
                if (rr != 0) { bf16 s = f2bf(v + bf2f(rr[c])); sr[c] = s; v = bf2f(s); }
                acc += v * v;
            }
            float scale = rsqrtf(block_sum(acc, partial) / (float)cols + eps);
            const bf16* src = sr != 0 ? sr : xr;   // the rounded sum, as ATen normalises the bfloat16 tensor
            bf16* o = out + (long long)row * cols;
            for (int c = threadIdx.x; c < cols; c += blockDim.x)
                o[c] = f2bf(bf2f(w[c]) * bf2f(f2bf(bf2f(src[c]) * scale)));
        }

        // meteora_rmsnorm_bf16 for rows of a multiple of 8 columns, at most 8·NORM_V·blockDim, with 16-byte aligned rows
        // (every LLaMA hidden size): each thread issues all its 16-byte loads of x, res and w at once and keeps the sum in
        // registers, so a row costs one trip to memory, where the loop above waits for one 2-byte load per column stride
        // (≈ 10 µs for one 4096-wide row at decode). Same roundings; the float32 sum of squares runs in another order.
        #define NORM_V 2
        __device__ __forceinline__ unsigned int pack2(float a, float b) { return (unsigned int)f2bf(a) | ((unsigned int)f2bf(b) << 16); }
        extern "C" __global__ void __launch_bounds__(1024) meteora_rmsnorm8_bf16(const bf16* x, long long xs, const bf16* res, long long rs,
                                                        bf16* sum, bf16* out, const bf16* w, int rows, int cols, float eps)
        {
            __shared__ float partial[32];
            int row = blockIdx.x;
            if (row >= rows) return;
            const uint4* xr = (const uint4*)(x + (long long)row * xs);
            const uint4* rr = res != 0 ? (const uint4*)(res + (long long)row * rs) : 0;
            uint4* sr = sum != 0 ? (uint4*)(sum + (long long)row * cols) : 0;
            uint4* o = (uint4*)(out + (long long)row * cols);
            int n8 = cols >> 3;
            uint4 xv[NORM_V], rv[NORM_V], wv[NORM_V];
            #pragma unroll
            for (int i = 0; i < NORM_V; i++) {
                int c = threadIdx.x + i * blockDim.x;
                if (c < n8) { xv[i] = xr[c]; if (rr != 0) rv[i] = rr[c]; wv[i] = ((const uint4*)w)[c]; }
            }
            float v[NORM_V][8];
            float acc = 0.f;
            #pragma unroll
            for (int i = 0; i < NORM_V; i++) {
                int c = threadIdx.x + i * blockDim.x;
                if (c < n8) {
                    unpack8(xv[i], v[i]);
                    if (rr != 0) {
                        float b[8];
                        unpack8(rv[i], b);
                        #pragma unroll
                        for (int j = 0; j < 8; j++) v[i][j] = bf2f(f2bf(v[i][j] + b[j]));   // s = bf16(x + res)
                        sr[c] = make_uint4(pack2(v[i][0], v[i][1]), pack2(v[i][2], v[i][3]), pack2(v[i][4], v[i][5]), pack2(v[i][6], v[i][7]));
                    }
                    #pragma unroll
                    for (int j = 0; j < 8; j++) acc += v[i][j] * v[i][j];
                }
            }
            float scale = rsqrtf(block_sum(acc, partial) / (float)cols + eps);
            #pragma unroll
            for (int i = 0; i < NORM_V; i++) {
                int c = threadIdx.x + i * blockDim.x;
                if (c < n8) {
                    float wf[8], r[8];
                    unpack8(wv[i], wf);
                    #pragma unroll
                    for (int j = 0; j < 8; j++) r[j] = wf[j] * bf2f(f2bf(v[i][j] * scale));
                    o[c] = make_uint4(pack2(r[0], r[1]), pack2(r[2], r[3]), pack2(r[4], r[5]), pack2(r[6], r[7]));
                }
            }
        }

        // Rotary embedding of q (tokens, qHeads, d) and k (tokens, kHeads, d) in one launch, one thread per output element:
        // out[j] = bf16(bf16(x[j]·cos[j]) + bf16(rot[j]·sin[j])), rot = (−x[d/2:], x[:d/2]); cos, sin (tokens, d).
        // Inputs: (heads, d) contiguous per token, tokens qs / ks elements apart; outputs contiguous.
        extern "C" __global__ void meteora_rotary_bf16(const bf16* q, long long qs, bf16* qo, int qHeads, const bf16* k, long long ks,
                                                       bf16* ko, int kHeads, const bf16* cosines, const bf16* sines, int tokens, int d)
        {
            long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
            long long qn = (long long)tokens * qHeads * d, kn = (long long)tokens * kHeads * d;
            if (e >= qn + kn) return;
            const bf16* x; bf16* o; int heads; long long xs;
            if (e < qn) { x = q; o = qo; heads = qHeads; xs = qs; } else { e -= qn; x = k; o = ko; heads = kHeads; xs = ks; }
            int j = (int)(e % d), half = d >> 1;
            long long perToken = (long long)heads * d;
            long long token = e / perToken;
            long long rowStart = token * xs + (e - token * perToken - j);   // this head's first element in x
            float rot = j < half ? -bf2f(x[rowStart + j + half]) : bf2f(x[rowStart + j - half]);
            float c = bf2f(cosines[token * d + j]), s = bf2f(sines[token * d + j]);
            o[e] = f2bf(bf2f(f2bf(bf2f(x[rowStart + j]) * c)) + bf2f(f2bf(rot * s)));
        }

        // SwiGLU's elementwise part: out = bf16(bf16(silu(g)) · u), silu(g) = g / (1 + e^−g) in float32. g and u are
        // (rows, cols) with row strides gs and us; out is contiguous.
        extern "C" __global__ void meteora_silu_mul_bf16(const bf16* g, long long gs, const bf16* u, long long us, bf16* out,
                                                         long long n, int cols)
        {
            long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
            if (e >= n) return;
            long long row = e / cols, c = e - row * cols;
            float v = bf2f(g[row * gs + c]);
            out[e] = f2bf(bf2f(f2bf(v / (1.f + expf(-v)))) * bf2f(u[row * us + c]));
        }

        // The same, eight columns per thread with 16-byte loads and stores, for rows of whole aligned 16-byte chunks
        // (every LLaMA intermediate size): one 64-bit division per eight elements instead of per element. n8 = n / 8,
        // cols8 = cols / 8; bit for bit the kernel above.
        extern "C" __global__ void meteora_silu_mul8_bf16(const bf16* g, long long gs, const bf16* u, long long us, bf16* out,
                                                          long long n8, int cols8)
        {
            long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
            if (e >= n8) return;
            long long row = e / cols8, c = e - row * cols8;
            float gf[8], uf[8], r[8];
            unpack8(((const uint4*)(g + row * gs))[c], gf);
            unpack8(((const uint4*)(u + row * us))[c], uf);
            #pragma unroll
            for (int j = 0; j < 8; j++) r[j] = bf2f(f2bf(gf[j] / (1.f + expf(-gf[j])))) * uf[j];
            ((uint4*)out)[e] = make_uint4(pack2(r[0], r[1]), pack2(r[2], r[3]), pack2(r[4], r[5]), pack2(r[6], r[7]));
        }
        """;

    /// <summary>Whether the fused kernels may be used (default true; <c>METEORA_FUSED_KERNELS=off</c> keeps ATen).</summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("METEORA_FUSED_KERNELS") is not ("off" or "0" or "false");

    private static readonly CudaKernelCache Kernels = new(Source, "fused elementwise kernels", "ATen elementwise ops", "fused kernels");

    /// <summary>What a bfloat16 model on <paramref name="device"/> uses for norms, rotary and SiLU·up, and why.</summary>
    public static string Describe(Device device)
    {
        if (device.type != DeviceType.CUDA) return "ATen elementwise ops (CPU)";
        if (!Enabled) return "ATen elementwise ops (fused kernels switched off)";
        Kernels.Get(device.index < 0 ? 0 : device.index, "meteora_rmsnorm_bf16", out var status);
        return status;
    }

    /// <summary>Kernel <paramref name="name"/> built for the CUDA device <paramref name="t"/> is on, or null.</summary>
    private static CudaKernel? KernelOn(Tensor t, string name) => Kernels.Get(t.device_index < 0 ? 0 : t.device_index, name, out _);

    /// <summary>The kernel <paramref name="name"/> when every tensor qualifies (see the class remarks), else null.</summary>
    private static CudaKernel? For(string name, Tensor first, Tensor? second = null, Tensor? third = null, Tensor? fourth = null)
    {
        // Fixed arity rather than params: no array per call on the eager hot path.
        if (!Enabled || first.device_type != DeviceType.CUDA) return null;
        bool grad = is_grad_enabled();
        bool Qualifies(Tensor? t) => t is null
            || t.dtype == ScalarType.BFloat16 && t.device_type == DeviceType.CUDA && t.device_index == first.device_index && t.stride(-1) == 1
               && !(grad && t.requires_grad);
        if (!Qualifies(first) || !Qualifies(second) || !Qualifies(third) || !Qualifies(fourth)) return null;
        return KernelOn(first, name);
    }

    /// <summary>
    /// The distance in elements between consecutive rows of <paramref name="t"/> seen as (rows, inner), where the last
    /// <paramref name="inner"/> dimensions are contiguous among themselves and the leading ones fold into one row
    /// index with a single stride (a contiguous tensor, or a column slice of a wider matrix viewed as (B, T, …)); null
    /// when it is not of that form. Size-1 dimensions may have any stride.
    /// </summary>
    internal static long? RowStride(Tensor t, int inner)
    {
        var shape = t.shape;
        var stride = t.stride();
        int n = shape.Length;
        if (inner > n) return null;
        long size = 1;
        for (int i = n - 1; i >= n - inner; i--)
        {
            if (shape[i] != 1 && stride[i] != size) return null;
            size *= shape[i];
        }
        long? rowStride = null;
        long span = 1;
        for (int i = n - inner - 1; i >= 0; i--)
        {
            if (shape[i] == 1) continue;
            if (rowStride is null) { rowStride = stride[i]; span = shape[i]; }
            else if (stride[i] != rowStride * span) return null;
            else span *= shape[i];
        }
        long rs = rowStride ?? size;
        return rs >= size ? rs : null;   // rows must not overlap
    }

    /// <summary>
    /// RMSNorm of x (…, cols) with <paramref name="weight"/> (cols,), or null when the ATen path must be taken. With
    /// <paramref name="residual"/>, normalises bf16(x + residual) and also returns that sum.
    /// </summary>
    public static (Tensor Sum, Tensor Normalized)? RmsNorm(Tensor x, Tensor? residual, Tensor weight, float eps)
    {
        if (For("meteora_rmsnorm_bf16", x, residual, weight) is not { } kernel) return null;
        long cols = weight.shape[0];
        if (x.shape[^1] != cols || residual is not null && !residual.shape.SequenceEqual(x.shape) || x.numel() == 0 || !weight.is_contiguous()) return null;
        if (RowStride(x, 1) is not { } xs) return null;
        long rs = 0;
        if (residual is not null) { if (RowStride(residual, 1) is { } r) rs = r; else return null; }
        var outN = empty(x.shape, x.dtype, x.device);                                   // contiguous, whatever x's rows
        var sum = residual is null ? x : empty(x.shape, x.dtype, x.device);
        IntPtr px = DeviceMemory.Address(x), pr = residual is null ? IntPtr.Zero : DeviceMemory.Address(residual);
        IntPtr ps = residual is null ? IntPtr.Zero : DeviceMemory.Address(sum), po = DeviceMemory.Address(outN), pw = DeviceMemory.Address(weight);
        int rows = (int)(x.numel() / cols), c = (int)cols;
        void** args = stackalloc void*[10];
        args[0] = &px; args[1] = &xs; args[2] = &pr; args[3] = &rs; args[4] = &ps; args[5] = &po; args[6] = &pw; args[7] = &rows; args[8] = &c; args[9] = &eps;
        // Rows of whole 16-byte chunks, aligned: the vector kernel, one chunk or two per thread.
        int chunks = c / 8, threads = Math.Min(1024, (Math.Min(chunks, 1024) + 31) / 32 * 32);
        if (c % 8 == 0 && chunks <= 2 * 1024 && px % 16 == 0 && xs % 8 == 0 && (residual is null || pr % 16 == 0 && rs % 8 == 0)
            && ps % 16 == 0 && po % 16 == 0 && pw % 16 == 0 && VectorNorm && KernelOn(x, "meteora_rmsnorm8_bf16") is { } vector)
            vector.Launch((uint)rows, (uint)threads, args);
        else
            kernel.Launch((uint)rows, NormThreads, args);
        return (sum, outN);
    }

    /// <summary>
    /// Rotary embedding of q (B, T, Hq, d) and k (B, T, Hk, d) with cos, sin (B, T, 1, d) in one launch, or null when
    /// the ATen path must be taken. Returns new tensors of q's and k's shapes.
    /// </summary>
    public static (Tensor Q, Tensor K)? Rotary(Tensor q, Tensor k, Tensor cos, Tensor sin)
    {
        if (For("meteora_rotary_bf16", q, k, cos, sin) is not { } kernel) return null;
        if (q.dim() != 4 || k.dim() != 4) return null;
        long B = q.shape[0], T = q.shape[1], d = q.shape[3];
        if (k.shape[0] != B || k.shape[1] != T || k.shape[3] != d || d % 2 != 0 || cos.numel() != B * T * d || sin.numel() != B * T * d) return null;
        if (!cos.is_contiguous() || !sin.is_contiguous() || RowStride(q, 2) is not { } qs || RowStride(k, 2) is not { } ks) return null;
        long total = q.numel() + k.numel();
        if (total == 0 || total > int.MaxValue * (long)ElementThreads) return null;
        var qo = empty(q.shape, q.dtype, q.device); var ko = empty(k.shape, k.dtype, k.device);   // contiguous
        IntPtr pq = DeviceMemory.Address(q), pqo = DeviceMemory.Address(qo), pk = DeviceMemory.Address(k), pko = DeviceMemory.Address(ko);
        IntPtr pc = DeviceMemory.Address(cos), ps = DeviceMemory.Address(sin);
        int qh = (int)q.shape[2], kh = (int)k.shape[2], tokens = (int)(B * T), dim = (int)d;
        void** args = stackalloc void*[12];
        args[0] = &pq; args[1] = &qs; args[2] = &pqo; args[3] = &qh; args[4] = &pk; args[5] = &ks; args[6] = &pko; args[7] = &kh;
        args[8] = &pc; args[9] = &ps; args[10] = &tokens; args[11] = &dim;
        kernel.Launch((uint)((total + ElementThreads - 1) / ElementThreads), ElementThreads, args);
        return (qo, ko);
    }

    /// <summary>bf16(silu(g)) · u for g, u of one shape, or null when the ATen path must be taken.</summary>
    public static Tensor? SiluMul(Tensor g, Tensor u)
    {
        if (For("meteora_silu_mul_bf16", g, u) is not { } kernel) return null;
        if (!g.shape.SequenceEqual(u.shape) || RowStride(g, 1) is not { } gs || RowStride(u, 1) is not { } us) return null;
        long n = g.numel();
        if (n == 0 || n > int.MaxValue * (long)ElementThreads) return null;
        int cols = (int)g.shape[^1];
        var o = empty(g.shape, g.dtype, g.device);                                        // contiguous
        IntPtr pg = DeviceMemory.Address(g), pu = DeviceMemory.Address(u), po = DeviceMemory.Address(o);
        void** args = stackalloc void*[7];
        args[0] = &pg; args[1] = &gs; args[2] = &pu; args[3] = &us; args[4] = &po;
        if (VectorSilu && cols % 8 == 0 && gs % 8 == 0 && us % 8 == 0 && pg % 16 == 0 && pu % 16 == 0 && po % 16 == 0
            && KernelOn(g, "meteora_silu_mul8_bf16") is { } vector)
        {
            long n8 = n / 8;
            int cols8 = cols / 8;
            args[5] = &n8; args[6] = &cols8;
            vector.Launch((uint)((n8 + ElementThreads - 1) / ElementThreads), ElementThreads, args);
            return o;
        }
        args[5] = &n; args[6] = &cols;
        kernel.Launch((uint)((n + ElementThreads - 1) / ElementThreads), ElementThreads, args);
        return o;
    }
}
