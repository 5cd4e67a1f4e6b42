# Where MeteoRA's expand kernel (src/Meteora/Moe/SelectiveMixKernel.cs, one token, 28 adapters r 8, top-2, out 4096)
# spends its time: the kernel as shipped against copies without the ranking, without the B loads, with smaller
# blocks, and a kernel that only reads and writes y (the floor), each timed in a CUDA graph over B copies that L2
# cannot hold. Source read from the C# files, so it is the shipped kernel. On a GPU machine with torch and CuPy,
# from the repository root:   python3 bench/probe/expand_variants.py
from graph_timing import timed
from csharp_source import raw
import cupy as cp, torch

src = raw("src/Meteora/Runtime/Bf16Device.cs", "Prelude") + raw("src/Meteora/Moe/RoutingKernel.cs", "Ranking") + raw("src/Meteora/Moe/SelectiveMixKernel.cs", "Source")
head, expand = src.split('extern "C" __global__ void meteora_expand_bf16(ExpandSegments segs)')
expand = '__device__ __forceinline__ void expand_body(const ExpandSegments& segs)' + expand
wrap = '''
extern "C" __global__ void expand_wrap(bf16* y, const float* h, const bf16* B, int out, int L, int r, int k) {
    ExpandSegments s; s.count = 1;
    s.s[0].y = y; s.s[0].h = h; s.s[0].B = B; s.s[0].ys = out; s.s[0].out = out; s.s[0].L = L; s.s[0].r = r; s.s[0].k = k;
    s.s[0].invT = 1.f; s.s[0].blockStart = 0;
    expand_body(s);
}
extern "C" __global__ void floor_wrap(bf16* y, const float* h, const bf16* B, int out, int L, int r, int k) {
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o < out) y[o] = f2bf(bf2f(y[o]) + h[L]);
}
'''
variants = {
    "shipped": expand,
    "no ranking": expand.replace("top_k(v, L, k, lane, sel, top);", "for (int t = 0; t < MAXK; t++) { sel[t] = t < k ? 3 * t : -1; top[t] = t < k ? v[0] : NEG_INF; }"),
    "no B loads": expand.replace("unpack8(*(const uint4*)(be + i), f);", "unpack8(make_uint4(0x3f803f80u, 0x3f803f80u, 0x3f803f80u, (unsigned)(size_t)be), f);"),
    "no logits load": expand.replace("load_logits(0, 0, hn, L, lane, v);", "for (int i = 0; i < PER; i++) v[i] = lane + 32 * i < L ? (float)((lane * 7 + i) % 13) : NEG_INF;"),
    # Candidates: the thread's whole B row (L·r bfloat16) prefetched to L2 before the logits load, so the chosen
    # columns come from L2 after the ranking; and the rank values z read as float4 pairs rather than one float at a time.
    "B row prefetched to L2": expand.replace("load_logits(0, 0, hn, L, lane, v);",
        "if (o < out) { const char* row = (const char*)(B + (long long)o * L * r); for (int off = 0; off < L * r * 2; off += 128) "
        "asm volatile(\"prefetch.global.L2 [%0];\" :: \"l\"(row + off)); }\n            load_logits(0, 0, hn, L, lane, v);"),
    "z as float4": expand.replace("acc = fmaf(bf2f(f2bf(bf2f(f2bf(z[i + j])) * w[t])), f[j], acc);",
        "acc = fmaf(bf2f(f2bf(bf2f(f2bf(zz[j])) * w[t])), f[j], acc);").replace(
        "unpack8(*(const uint4*)(be + i), f);",
        "unpack8(*(const uint4*)(be + i), f);\n                        float4 z0 = *(const float4*)(z + i), z1 = *(const float4*)(z + i + 4);\n"
        "                        float zz[8] = { z0.x, z0.y, z0.z, z0.w, z1.x, z1.y, z1.z, z1.w };"),
}
for name, body in variants.items():
    if name != "shipped": assert body != expand, name
out, L, r, k = 4096, 28, 8, 2
copies = 64
Bs = [torch.randn(out, L * r, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(copies)]
hs = [torch.randn(1, L + L * r, device="cuda", dtype=torch.float32) for _ in range(copies)]
ys = [torch.randn(1, out, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]

print(torch.cuda.get_device_name(), f"out {out}, L {L}, r {r}, top-{k}; µs per launch in a CUDA graph")
for name, body in variants.items():
    mod = cp.RawModule(code=head + body + wrap, options=("-std=c++14",))
    for threads in ([256, 128, 64, 32] if name == "shipped" else [256]):
        for kern in (["expand_wrap", "floor_wrap"] if name == "shipped" and threads == 256 else ["expand_wrap"]):
            f = mod.get_function(kern)
            grid = (out + threads - 1) // threads
            def launch(i, f=f, grid=grid, threads=threads):
                with cp.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream):
                    f((grid,), (threads,), (cp.uint64(ys[i % copies].data_ptr()), cp.uint64(hs[i % copies].data_ptr()), cp.uint64(Bs[i % copies].data_ptr()),
                                           cp.int32(out), cp.int32(L), cp.int32(r), cp.int32(k)))
            t = timed(launch, 64, replays=20)
            print(f"  {name if kern == 'expand_wrap' else 'floor (read y, write y)'}, {threads} threads/block ({grid} blocks): {t:.2f} µs", flush=True)
