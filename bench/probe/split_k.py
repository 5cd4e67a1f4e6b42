"""Probe: the [A_all; G] GEMM of a MeteoRA projection (N tokens × in → C = L·r + L + pad columns) is skinny,
so at N = 4096 cuBLAS runs it on ~64 output tiles, half the GPU. Does splitting K over a strided bmm (S partial
products, then one sum) beat it? Also: the same GEMM on a side stream beside the base GEMM.

python3 bench/probe/split_k.py   (prints one line per case; times are CUDA-event medians in microseconds)
"""
import torch

torch.manual_seed(0)
dev, dt = "cuda", torch.bfloat16
C = 256          # 28 adapters × rank 8 + 28 gate columns + 4 pad


def timed(fn, runs=30, warmup=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); b.synchronize()
        times.append(a.elapsed_time(b) * 1000)
    times.sort()
    return times[len(times) // 2]


def split_k(x, wa, s):
    n, k = x.shape
    xs = x.view(n, s, k // s).transpose(0, 1)                  # (S, N, K/S), row-major, ld = K
    ws = wa.view(wa.shape[0], s, k // s).permute(1, 2, 0)      # (S, K/S, C), column-major, ld = K
    return torch.bmm(xs, ws).sum(0)                            # (N, C)


side = torch.cuda.Stream()
for k_in, out in [(4096, 4096), (4096, 1024), (4096, 14336), (14336, 4096)]:
    w = torch.randn(out + C, k_in, device=dev, dtype=dt) * 0.02
    wb, wa = w[:out], w[out:]
    for n in [1024, 2048, 4096, 8192]:
        x = torch.randn(n, k_in, device=dev, dtype=dt)
        ref = x @ wa.t()
        row = {"base": timed(lambda: x @ wb.t()), "plain": timed(lambda: x @ wa.t()), "fused": timed(lambda: x @ w.t())}
        for s in (2, 4, 8, 16):
            if k_in // s >= 512:
                row[f"split{s}"] = timed(lambda: split_k(x, wa, s))
                err = ((split_k(x, wa, s).float() - ref.float()).abs().max() / ref.float().abs().max()).item()
                row[f"err{s}"] = err

        def both():
            y = x @ wb.t()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                h = x @ wa.t()
            torch.cuda.current_stream().wait_stream(side)
            return y, h
        row["base+plain seq"] = timed(lambda: (x @ wb.t(), x @ wa.t()))
        row["base||plain"] = timed(both)
        print(f"{k_in}->{out} N={n}: " + "  ".join(f"{key} {v:.1f}" if "err" not in key else f"{key} {v:.1e}" for key, v in row.items()), flush=True)
