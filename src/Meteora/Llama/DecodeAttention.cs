using Meteora.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Meteora.Llama;

/// <summary>
/// Attention of one new token per row over the KV cache, for bfloat16 inference on CUDA (issue #17 item 2): a
/// split-K ("flash-decoding") pair of kernels compiled with NVRTC. SDPA at decode reads the whole static cache
/// under a mask (a CUDA graph needs fixed shapes) and costs ~42 µs per layer of an 8B model for ~2 MB of keys and
/// values; here the cache is cut into <see cref="Chunk"/>-slot chunks, a block per (row, KV head, chunk) first
/// checks its slots in the mask and leaves at once when none is attended (the unfilled tail of a static cache), so
/// only the filled part is read, whatever the cache's capacity. The chunk's keys and values are staged in shared
/// memory with 16-byte loads (head dimensions up to 128, multiples of 8; larger ones keep SDPA).
/// <para>
/// Kernel 1, per (row, KV head, chunk): the rep = H / Hkv query heads that share the KV head (GQA: each key is read
/// once for all of them) score the chunk's keys in float32 (q·k · 1/√d, −∞ where masked), and keep the chunk's
/// max m, Σ exp(s − m) and Σ exp(s − m)·v. Kernel 2, per (row, head): combines the chunks' partials with their
/// maxima and writes bf16(Σ / l) as (B, 1, H·d). Scores, softmax and sums stay in float32 (SDPA's flash and
/// memory-efficient kernels round the probabilities to bfloat16 before multiplying V), so the result can differ
/// from SDPA's in the last bfloat16 bit; bench/device-fused.sh compares greedy tokens with it on and off.
/// </para>
/// <c>METEORA_DECODE_ATTENTION=off</c> (or <see cref="Enabled"/> = false) keeps SDPA.
/// </summary>
internal static unsafe class DecodeAttention
{
    /// <summary>Cache slots per block of kernel 1.</summary>
    public const int Chunk = 32;
    private const int Threads = 128, MaxRep = 16, MaxDim = 128;

    internal const string Source = Bf16Device.Prelude + """
        #define CHUNK 32
        #define NEG_INF __int_as_float(0xff800000)
        // One block per (row b, KV head g, chunk c) of 128 threads. q (B, H, d) contiguous; k, v (B, Hkv, ≥S, d) with
        // batch stride kb and head stride kh (slots d apart, d ≤ 128 and a multiple of 8); mask (B, S) bytes with row
        // stride ms, or null (all slots attended). Writes, for each of the rep query heads h = g·rep + r:
        // m[(b·H + h)·chunks + c], l[…] and acc[(…)·d + j]; a chunk with no attended slot writes m = −∞, l = 0, no acc.
        // The chunk's keys and values are staged in shared memory with 16-byte loads (all in flight at once), so the
        // block waits for memory about once instead of once per slot.
        extern "C" __global__ void meteora_decode_attn_partial_bf16(const bf16* q, const bf16* k, const bf16* v, long long kb,
            long long kh, const unsigned char* mask, long long ms, int S, int H, int Hkv, int d, int chunks, float scale,
            float* acc, float* m, float* l)
        {
            __shared__ float qs[16 * 128];                     // rep × d query values, float32
            __shared__ __align__(16) bf16 ks[CHUNK * 128];     // the chunk's keys, (CHUNK, d)
            __shared__ __align__(16) bf16 vs[CHUNK * 128];     // and values
            __shared__ float ps[16 * CHUNK];                   // rep × CHUNK scores, then probabilities
            __shared__ int att[CHUNK];
            int c = blockIdx.x % chunks, bg = blockIdx.x / chunks, g = bg % Hkv, b = bg / Hkv;
            int rep = H / Hkv, start = c * CHUNK, t = threadIdx.x, lane = t & 31, warp = t >> 5, warps = blockDim.x >> 5;
            int last = min(CHUNK, S - start);                  // slots of this chunk inside the cache view
            bool attended = t < last && (mask == 0 || mask[(long long)b * ms + start + t] != 0);
            if (t < CHUNK) att[t] = attended ? 1 : 0;
            long long base = (long long)b * H + (long long)g * rep;      // (b, first head of the group)
            if (!__syncthreads_or(attended)) {
                for (int r = t; r < rep; r += blockDim.x) { m[(base + r) * chunks + c] = NEG_INF; l[(base + r) * chunks + c] = 0.f; }
                return;
            }
            const bf16* kg = k + (long long)b * kb + (long long)g * kh + (long long)start * d;
            const bf16* vg = v + (long long)b * kb + (long long)g * kh + (long long)start * d;
            int vectors = last * d / 8;                        // 16-byte vectors of 8 bf16
            for (int i = t; i < vectors; i += blockDim.x) {
                ((uint4*)ks)[i] = ((const uint4*)kg)[i];
                ((uint4*)vs)[i] = ((const uint4*)vg)[i];
            }
            for (int i = t; i < rep * d; i += blockDim.x) qs[i] = bf2f(q[base * d + i]);
            __syncthreads();
            // Scores: warp w takes slots w, w + warps, …; its lanes split the d dimensions, each key read once for all heads.
            for (int p = warp; p < CHUNK; p += warps) {
                float kr[4];
                #pragma unroll
                for (int i = 0; i < 4; i++) { int j = lane + 32 * i; kr[i] = p < last && j < d ? bf2f(ks[p * d + j]) : 0.f; }
                for (int r = 0; r < rep; r++) {
                    float dot = 0.f;
                    #pragma unroll
                    for (int i = 0; i < 4; i++) { int j = lane + 32 * i; if (j < d) dot += qs[r * d + j] * kr[i]; }
                    #pragma unroll
                    for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
                    if (lane == 0) ps[r * CHUNK + p] = att[p] ? dot * scale : NEG_INF;
                }
            }
            __syncthreads();
            // Chunk softmax statistics, one warp per head, one slot per lane.
            for (int r = warp; r < rep; r += warps) {
                float a = ps[r * CHUNK + lane];
                float mx = a;
                #pragma unroll
                for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
                float pa = a == NEG_INF ? 0.f : expf(a - mx);
                ps[r * CHUNK + lane] = pa;
                float sum = pa;
                #pragma unroll
                for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
                if (lane == 0) { m[(base + r) * chunks + c] = mx; l[(base + r) * chunks + c] = sum; }
            }
            __syncthreads();
            // Σ p·v per (head, dimension), from shared memory.
            for (int i = t; i < rep * d; i += blockDim.x) {
                int r = i / d, j = i - r * d;
                float a = 0.f;
                for (int p = 0; p < last; p++) {
                    float w = ps[r * CHUNK + p];
                    if (w != 0.f) a += w * bf2f(vs[p * d + j]);
                }
                acc[((base + r) * chunks + c) * d + j] = a;
            }
        }

        // One block per (row, head), one thread per dimension: out = bf16(Σ_c e^{m_c − M}·acc_c / Σ_c e^{m_c − M}·l_c).
        extern "C" __global__ void meteora_decode_attn_combine_bf16(const float* acc, const float* m, const float* l,
            int chunks, int d, bf16* out)
        {
            long long bh = blockIdx.x;
            int j = threadIdx.x;
            float mx = NEG_INF;
            for (int c = 0; c < chunks; c++) if (l[bh * chunks + c] > 0.f) mx = fmaxf(mx, m[bh * chunks + c]);
            float num = 0.f, den = 0.f;
            for (int c = 0; c < chunks; c++) {
                float lc = l[bh * chunks + c];
                if (lc > 0.f) { float w = expf(m[bh * chunks + c] - mx); den += w * lc; if (j < d) num += w * acc[(bh * chunks + c) * d + j]; }
            }
            if (j < d) out[bh * d + j] = f2bf(num / den);
        }
        """;

    /// <summary>Whether decode attention uses these kernels where they apply (default true).</summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("METEORA_DECODE_ATTENTION") is not ("off" or "0" or "false");

    private static readonly CudaKernelCache Kernels = new(Source, "decode-attention kernels", "SDPA", "decode-attention kernels");

    /// <summary>What a bfloat16 model on <paramref name="device"/> uses for one-token attention, and why.</summary>
    public static string Describe(Device device)
    {
        if (device.type != DeviceType.CUDA) return "SDPA (CPU)";
        if (!Enabled) return "SDPA (decode-attention kernels switched off)";
        Kernels.Get(device.index < 0 ? 0 : device.index, "meteora_decode_attn_partial_bf16", out var status);
        return status;
    }

    /// <summary>
    /// Attention of q (B, 1, H, d) over keys and values (B, Hkv, S, d) — views of the cache whose slots are d apart —
    /// under <paramref name="mask"/> (B, 1, 1, S) bool (true = attend) or none; returns (B, 1, H·d), or null when the
    /// SDPA path must be taken (not bfloat16 on CUDA, grad needed, other layouts, d or the group too large).
    /// </summary>
    public static Tensor? Apply(Tensor q, Tensor k, Tensor v, Tensor? mask)
    {
        if (!Enabled || q.device_type != DeviceType.CUDA || q.dtype != ScalarType.BFloat16 || k.dtype != q.dtype || v.dtype != q.dtype) return null;
        if (is_grad_enabled() && (q.requires_grad || k.requires_grad || v.requires_grad)) return null;
        if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4 || q.shape[1] != 1 || !q.is_contiguous()) return null;
        long B = q.shape[0], H = q.shape[2], d = q.shape[3], Hkv = k.shape[1], S = k.shape[2];
        if (k.shape[0] != B || k.shape[3] != d || !v.shape.SequenceEqual(k.shape) || Hkv == 0 || H % Hkv != 0 || S == 0) return null;
        long rep = H / Hkv;
        if (d > MaxDim || d % 8 != 0 || rep > MaxRep) return null;
        var ks = k.stride(); var vs = v.stride();
        if (ks[3] != 1 || ks[2] != d || !vs.SequenceEqual(ks)) return null;               // k and v: the same cache layout
        long maskStride = 0;
        if (mask is not null)
        {
            if (mask.dtype != ScalarType.Bool || mask.dim() != 4 || mask.shape[0] != B || mask.shape[1] != 1 || mask.shape[2] != 1
                || mask.shape[3] != S || mask.stride(3) != 1 || mask.device_index != q.device_index) return null;
            maskStride = mask.stride(0);
        }
        if (k.device_index != q.device_index || v.device_index != q.device_index) return null;
        if (DeviceMemory.Address(k) % 16 != 0 || DeviceMemory.Address(v) % 16 != 0) return null;      // the kernel's 16-byte loads
        int device = q.device_index < 0 ? 0 : q.device_index;
        if (Kernels.Get(device, "meteora_decode_attn_partial_bf16", out _) is not { } partial
            || Kernels.Get(device, "meteora_decode_attn_combine_bf16", out _) is not { } combine)
            return null;

        int chunks = (int)((S + Chunk - 1) / Chunk);
        var acc = empty(B * H * chunks * d, ScalarType.Float32, q.device);               // (B, H, chunks, d)
        var m = empty(B * H * chunks, ScalarType.Float32, q.device);                     // (B, H, chunks)
        var l = empty(B * H * chunks, ScalarType.Float32, q.device);
        var o = empty(new[] { B, 1, H * d }, q.dtype, q.device);                          // (B, 1, H·d)
        IntPtr pq = DeviceMemory.Address(q), pk = DeviceMemory.Address(k), pv = DeviceMemory.Address(v);
        IntPtr pm = mask is null ? IntPtr.Zero : DeviceMemory.Address(mask);
        IntPtr pacc = DeviceMemory.Address(acc), pmax = DeviceMemory.Address(m), psum = DeviceMemory.Address(l), po = DeviceMemory.Address(o);
        long kb = ks[0], kh = ks[1];
        int s = (int)S, h = (int)H, hkv = (int)Hkv, dim = (int)d;
        float scale = (float)(1.0 / Math.Sqrt(d));
        void** args = stackalloc void*[16];
        args[0] = &pq; args[1] = &pk; args[2] = &pv; args[3] = &kb; args[4] = &kh; args[5] = &pm; args[6] = &maskStride; args[7] = &s;
        args[8] = &h; args[9] = &hkv; args[10] = &dim; args[11] = &chunks; args[12] = &scale; args[13] = &pacc; args[14] = &pmax; args[15] = &psum;
        partial.Launch((uint)(B * Hkv * chunks), Threads, args);
        void** cargs = stackalloc void*[6];
        cargs[0] = &pacc; cargs[1] = &pmax; cargs[2] = &psum; cargs[3] = &chunks; cargs[4] = &dim; cargs[5] = &po;
        combine.Launch((uint)(B * H), (uint)((d + 31) / 32 * 32), cargs);
        return o;
    }
}
