# One-token bfloat16 GEMV variants against cuBLAS (torch.nn.functional.linear) at LLaMA-3-8B decode shapes, each
# timed inside a CUDA graph (launch gaps as in a decode step) over enough weight copies that L2 (50 MB) cannot hold
# them. A prototype for src/Meteora/Llama/DecodeGemv.cs (issue #17): which layout streams a projection closest to the
# memory bandwidth. Run on a GPU machine with torch and CuPy:   python3 bench/probe/gemv_variants.py > gemv.txt
import itertools, sys
from graph_timing import timed
import cupy as cp
import torch

SRC = r"""
typedef unsigned short bf16;
__device__ __forceinline__ void unpack8(uint4 v, float* f) {
    unsigned u[4] = {v.x, v.y, v.z, v.w};
    #pragma unroll
    for (int i = 0; i < 4; i++) { f[2 * i] = __uint_as_float(u[i] << 16); f[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u); }
}
__device__ __forceinline__ bf16 f2bf(float f) { unsigned u = __float_as_uint(f); u += 0x7fffu + ((u >> 16) & 1u); return (bf16)(u >> 16); }

// y (rows) = W (rows, in) x (in), one token. A warp owns RPW rows; each lane issues RPW*U 16-byte loads at once
// (a warp-wide load is 512 contiguous bytes of a row); x from shared memory (XSMEM) or through L1; weights with the
// streaming hint (STREAM) or the read-only path. SPLIT warps share a row (each a contiguous 1/SPLIT of it).
template <int RPW, int U, int STREAM, int XSMEM, int SPLIT>
__global__ void gemv(const bf16* __restrict__ x, const bf16* __restrict__ W, bf16* __restrict__ y, int rows, int in)
{
    extern __shared__ uint4 xs[];
    __shared__ float part[32][RPW];
    const uint4* x4 = (const uint4*)x;
    int n4 = in >> 3;
    if (XSMEM) { for (int i = threadIdx.x; i < n4; i += blockDim.x) xs[i] = x4[i]; __syncthreads(); }
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int wpb = blockDim.x >> 5;
    int row0 = (blockIdx.x * (wpb / SPLIT) + warp / SPLIT) * RPW, s = warp % SPLIT;
    int span = n4 / SPLIT, k0 = s * span, k1 = s == SPLIT - 1 ? n4 : k0 + span;
    float acc[RPW];
    #pragma unroll
    for (int r = 0; r < RPW; r++) acc[r] = 0.f;
    const uint4* w4 = (const uint4*)W + (long long)row0 * n4;
    if (row0 < rows) {
        for (int base = k0; base < k1; base += 32 * U) {
            uint4 wv[RPW][U];
            #pragma unroll
            for (int u = 0; u < U; u++) {
                int c = base + u * 32 + lane;
                #pragma unroll
                for (int r = 0; r < RPW; r++) {
                    if (c < k1 && row0 + r < rows) wv[r][u] = STREAM ? __ldcs(w4 + (long long)r * n4 + c) : __ldg(w4 + (long long)r * n4 + c);
                    else wv[r][u] = make_uint4(0, 0, 0, 0);
                }
            }
            #pragma unroll
            for (int u = 0; u < U; u++) {
                int c = base + u * 32 + lane;
                if (c < k1) {
                    float xf[8];
                    unpack8(XSMEM ? xs[c] : __ldg(x4 + c), xf);
                    #pragma unroll
                    for (int r = 0; r < RPW; r++) {
                        float f[8];
                        unpack8(wv[r][u], f);
                        #pragma unroll
                        for (int j = 0; j < 8; j++) acc[r] = fmaf(f[j], xf[j], acc[r]);
                    }
                }
            }
        }
    }
    #pragma unroll
    for (int r = 0; r < RPW; r++) {
        float v = acc[r];
        #pragma unroll
        for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
        acc[r] = v;
    }
    if (SPLIT == 1) {
        if (lane == 0) {
            #pragma unroll
            for (int r = 0; r < RPW; r++) if (row0 + r < rows) y[row0 + r] = f2bf(acc[r]);
        }
    } else {
        if (lane == 0) {
            #pragma unroll
            for (int r = 0; r < RPW; r++) part[warp][r] = acc[r];
        }
        __syncthreads();
        if (s == 0 && lane < RPW && row0 + lane < rows) {
            float v = 0.f;
            for (int j = 0; j < SPLIT; j++) v += part[warp + j][lane];
            y[row0 + lane] = f2bf(v);
        }
    }
}
"""

SHAPES = {"q/k/v 6144x4096": (6144, 4096), "o 4096x4096": (4096, 4096), "gate/up 28672x4096": (28672, 4096),
          "down 4096x14336": (4096, 14336), "LM head 128256x4096": (128256, 4096)}
VARIANTS = [dict(rpw=rpw, u=u, stream=st, xsmem=xm, split=sp, warps=wp)
            for rpw, u, st, xm, sp, wp in itertools.product([1, 2, 4], [2, 4, 8], [0, 1], [0, 1], [1, 2, 4], [4, 8])
            if rpw * u <= 16 and sp <= wp]
names = [f"gemv<{v['rpw']},{v['u']},{v['stream']},{v['xsmem']},{v['split']}>" for v in VARIANTS]
mod = cp.RawModule(code=SRC, options=("-std=c++14", "--use_fast_math"), name_expressions=sorted(set(names)))
dev = torch.device("cuda")
torch.manual_seed(0)
print(torch.cuda.get_device_name(), file=sys.stderr)



results = []
for sname, (rows, inf) in SHAPES.items():
    nbytes = rows * inf * 2
    copies = max(1, -(-400_000_000 // nbytes))
    Ws = [torch.randn(rows, inf, device=dev, dtype=torch.bfloat16) * 0.02 for _ in range(copies)]
    x = torch.randn(1, inf, device=dev, dtype=torch.bfloat16)
    ys = [torch.empty(rows, device=dev, dtype=torch.bfloat16) for _ in range(copies)]
    launches = max(copies, 24)
    ref = torch.nn.functional.linear(x, Ws[0]).float().flatten()
    t_blas = timed(lambda i: torch.nn.functional.linear(x, Ws[i % copies]), launches)
    print(f"{sname}: cuBLAS {t_blas:.2f} µs ({nbytes / t_blas / 1e3:.0f} GB/s)", flush=True)
    res = []
    for v, name in zip(VARIANTS, names):
        k = mod.get_function(name)
        wpb = v["warps"]
        rows_per_block = wpb // v["split"] * v["rpw"]
        grid = (rows + rows_per_block - 1) // rows_per_block
        smem = inf * 2 if v["xsmem"] else 0
        if smem > 48 * 1024:
            k.max_dynamic_shared_size_bytes = smem
        def launch(i, k=k, grid=grid, wpb=wpb, smem=smem):
            with cp.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream):
                k((grid,), (32 * wpb,), (cp.uint64(x.data_ptr()), cp.uint64(Ws[i % copies].data_ptr()), cp.uint64(ys[i % copies].data_ptr()), cp.int32(rows), cp.int32(inf)), shared_mem=smem)
        launch(0); torch.cuda.synchronize()
        err = (ys[0].float() - ref).abs().max().item()
        t = timed(launch, launches)
        res.append((t, name, wpb, err))
    res.sort()
    for t, name, wpb, err in res[:8]:
        print(f"  {name} warps {wpb}: {t:.2f} µs ({nbytes / t / 1e3:.0f} GB/s, {t_blas / t:.2f}x cuBLAS), max err {err:.4f}", flush=True)
    results.append((sname, t_blas, res))
    del Ws, ys
    torch.cuda.empty_cache()

# One variant for every shape: the best sum of times over the five shapes (as one decode step weighs them: per layer
# q/k/v, o, gate/up, down once; the LM head once per 32 layers).
weights = {"q/k/v 6144x4096": 32, "o 4096x4096": 32, "gate/up 28672x4096": 32, "down 4096x14336": 32, "LM head 128256x4096": 1}
tot = {}
for sname, t_blas, res in results:
    for t, name, wpb, err in res:
        tot[(name, wpb)] = tot.get((name, wpb), 0) + weights[sname] * t
blas = sum(weights[s] * t for s, t, _ in results)
print(f"decode-step weighted: cuBLAS {blas / 1000:.3f} ms")
for (name, wpb), t in sorted(tot.items(), key=lambda kv: kv[1])[:10]:
    print(f"  {name} warps {wpb}: {t / 1000:.3f} ms ({blas / t:.2f}x)")
