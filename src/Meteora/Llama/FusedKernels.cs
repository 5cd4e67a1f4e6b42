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
/// Used only where no autograd graph is needed (no input requires grad, or grad mode is off), on contiguous bfloat16
/// CUDA tensors; everything else — CPU, float32/float16, training — takes the ATen path unchanged.
/// <c>METEORA_FUSED_KERNELS=off</c> (or <see cref="Enabled"/> = false) keeps ATen everywhere, e.g. to compare.
/// </para>
/// </summary>
internal static unsafe class FusedKernels
{
    private const int NormThreads = 256, ElementThreads = 256;

    internal const string Source = Bf16Device.Prelude + """
        // One block per row. x (rows, cols); with res: s = bf16(x + res) is written to sum and normalised, else s = x.
        // out = bf16(w · bf16(s · rsqrt(mean(s²) + eps))), as transformers' LlamaRMSNorm in bfloat16.
        extern "C" __global__ void meteora_rmsnorm_bf16(const bf16* x, const bf16* res, bf16* sum, bf16* out, const bf16* w,
                                                        int rows, int cols, float eps)
        {
            __shared__ float partial[32];
            int row = blockIdx.x;
            if (row >= rows) return;
            const bf16* xr = x + (long long)row * cols;
            const bf16* rr = res != 0 ? res + (long long)row * cols : 0;
            bf16* sr = sum != 0 ? sum + (long long)row * cols : 0;
            float acc = 0.f;
            for (int c = threadIdx.x; c < cols; c += blockDim.x) {
                float v = bf2f(xr[c]);
                if (rr != 0) { bf16 s = f2bf(v + bf2f(rr[c])); sr[c] = s; v = bf2f(s); }
                acc += v * v;
            }
            #pragma unroll
            for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
            int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = (blockDim.x + 31) >> 5;
            if (lane == 0) partial[warp] = acc;
            __syncthreads();
            if (warp == 0) {
                acc = lane < warps ? partial[lane] : 0.f;
                #pragma unroll
                for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
                if (lane == 0) partial[0] = acc;
            }
            __syncthreads();
            float scale = rsqrtf(partial[0] / (float)cols + eps);
            const bf16* src = sr != 0 ? sr : xr;   // the rounded sum, as ATen normalises the bfloat16 tensor
            bf16* o = out + (long long)row * cols;
            for (int c = threadIdx.x; c < cols; c += blockDim.x)
                o[c] = f2bf(bf2f(w[c]) * bf2f(f2bf(bf2f(src[c]) * scale)));
        }

        // Rotary embedding of q (tokens, qHeads, d) and k (tokens, kHeads, d) in one launch, one thread per output element:
        // out[j] = bf16(bf16(x[j]·cos[j]) + bf16(rot[j]·sin[j])), rot = (−x[d/2:], x[:d/2]); cos, sin (tokens, d).
        extern "C" __global__ void meteora_rotary_bf16(const bf16* q, bf16* qo, int qHeads, const bf16* k, bf16* ko, int kHeads,
                                                       const bf16* cosines, const bf16* sines, int tokens, int d)
        {
            long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
            long long qn = (long long)tokens * qHeads * d, kn = (long long)tokens * kHeads * d;
            if (e >= qn + kn) return;
            const bf16* x; bf16* o; int heads;
            if (e < qn) { x = q; o = qo; heads = qHeads; } else { e -= qn; x = k; o = ko; heads = kHeads; }
            int j = (int)(e % d), half = d >> 1;
            long long token = e / ((long long)heads * d);
            long long rowStart = e - j;
            float rot = j < half ? -bf2f(x[rowStart + j + half]) : bf2f(x[rowStart + j - half]);
            float c = bf2f(cosines[token * d + j]), s = bf2f(sines[token * d + j]);
            o[e] = f2bf(bf2f(f2bf(bf2f(x[e]) * c)) + bf2f(f2bf(rot * s)));
        }

        // SwiGLU's elementwise part: out = bf16(bf16(silu(g)) · u), silu(g) = g / (1 + e^−g) in float32.
        extern "C" __global__ void meteora_silu_mul_bf16(const bf16* g, const bf16* u, bf16* out, long long n)
        {
            long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
            if (e >= n) return;
            float v = bf2f(g[e]);
            out[e] = f2bf(bf2f(f2bf(v / (1.f + expf(-v)))) * bf2f(u[e]));
        }
        """;

    /// <summary>Whether the fused kernels may be used (default true; <c>METEORA_FUSED_KERNELS=off</c> keeps ATen).</summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("METEORA_FUSED_KERNELS") is not ("off" or "0" or "false");

    private static readonly object Gate = new();
    private static readonly Dictionary<(int Device, string Name), (CudaKernel? Kernel, string Status)> Loaded = [];

    private static CudaKernel? Get(int device, string name, out string status)
    {
        lock (Gate)
        {
            if (!Loaded.TryGetValue((device, name), out var entry))
            {
                try { var k = CudaKernel.Load(Source, name, device); entry = (k, $"fused elementwise kernels ({k.Architecture}, NVRTC from {Nvrtc.Location})"); }
                catch (MeteoraException e) { entry = (null, $"ATen elementwise ops (fused kernels unavailable: {e.Message})"); }
                Loaded[(device, name)] = entry;
            }
            status = entry.Status;
            return entry.Kernel;
        }
    }

    /// <summary>What a bfloat16 model on <paramref name="device"/> uses for norms, rotary and SiLU·up, and why.</summary>
    public static string Describe(Device device)
    {
        if (device.type != DeviceType.CUDA) return "ATen elementwise ops (CPU)";
        if (!Enabled) return "ATen elementwise ops (fused kernels switched off)";
        Get(device.index < 0 ? 0 : device.index, "meteora_rmsnorm_bf16", out var status);
        return status;
    }

    /// <summary>The kernel <paramref name="name"/> when every tensor qualifies (see the class remarks), else null.</summary>
    private static CudaKernel? For(string name, params Tensor?[] tensors)
    {
        if (!Enabled) return null;
        var first = tensors[0]!;
        if (first.device_type != DeviceType.CUDA) return null;
        bool grad = is_grad_enabled();
        foreach (var t in tensors)
        {
            if (t is null) continue;
            if (t.dtype != ScalarType.BFloat16 || t.device_type != DeviceType.CUDA || t.device_index != first.device_index || !t.is_contiguous()) return null;
            if (grad && t.requires_grad) return null;
        }
        return Get(first.device_index < 0 ? 0 : first.device_index, name, out _);
    }

    /// <summary>
    /// RMSNorm of x (…, cols) with <paramref name="weight"/> (cols,), or null when the ATen path must be taken. With
    /// <paramref name="residual"/>, normalises bf16(x + residual) and also returns that sum.
    /// </summary>
    public static (Tensor Sum, Tensor Normalized)? RmsNorm(Tensor x, Tensor? residual, Tensor weight, float eps)
    {
        if (For("meteora_rmsnorm_bf16", x, residual, weight) is not { } kernel) return null;
        long cols = weight.shape[0];
        if (x.shape[^1] != cols || residual is not null && !residual.shape.SequenceEqual(x.shape) || x.numel() == 0) return null;
        var outN = empty_like(x);
        var sum = residual is null ? x : empty_like(x);
        IntPtr px = DeviceMemory.Address(x), pr = residual is null ? IntPtr.Zero : DeviceMemory.Address(residual);
        IntPtr ps = residual is null ? IntPtr.Zero : DeviceMemory.Address(sum), po = DeviceMemory.Address(outN), pw = DeviceMemory.Address(weight);
        int rows = (int)(x.numel() / cols), c = (int)cols;
        void** args = stackalloc void*[8];
        args[0] = &px; args[1] = &pr; args[2] = &ps; args[3] = &po; args[4] = &pw; args[5] = &rows; args[6] = &c; args[7] = &eps;
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
        long total = q.numel() + k.numel();
        if (total == 0 || total > int.MaxValue * (long)ElementThreads) return null;
        var qo = empty_like(q); var ko = empty_like(k);
        IntPtr pq = DeviceMemory.Address(q), pqo = DeviceMemory.Address(qo), pk = DeviceMemory.Address(k), pko = DeviceMemory.Address(ko);
        IntPtr pc = DeviceMemory.Address(cos), ps = DeviceMemory.Address(sin);
        int qh = (int)q.shape[2], kh = (int)k.shape[2], tokens = (int)(B * T), dim = (int)d;
        void** args = stackalloc void*[10];
        args[0] = &pq; args[1] = &pqo; args[2] = &qh; args[3] = &pk; args[4] = &pko; args[5] = &kh; args[6] = &pc; args[7] = &ps;
        args[8] = &tokens; args[9] = &dim;
        kernel.Launch((uint)((total + ElementThreads - 1) / ElementThreads), ElementThreads, args);
        return (qo, ko);
    }

    /// <summary>bf16(silu(g)) · u for g, u of one shape, or null when the ATen path must be taken.</summary>
    public static Tensor? SiluMul(Tensor g, Tensor u)
    {
        if (For("meteora_silu_mul_bf16", g, u) is not { } kernel) return null;
        if (!g.shape.SequenceEqual(u.shape)) return null;
        long n = g.numel();
        if (n == 0 || n > int.MaxValue * (long)ElementThreads) return null;
        var o = empty_like(g);
        IntPtr pg = DeviceMemory.Address(g), pu = DeviceMemory.Address(u), po = DeviceMemory.Address(o);
        void** args = stackalloc void*[4];
        args[0] = &pg; args[1] = &pu; args[2] = &po; args[3] = &n;
        kernel.Launch((uint)((n + ElementThreads - 1) / ElementThreads), ElementThreads, args);
        return o;
    }
}
