#!/usr/bin/env python3
"""PyTorch eager reference for `meteora bench layer`: one MeteoRA projection in the original paper's two
formulations — the per-adapter loop and gather-bmm ("bmm-torch") — and the bare projection, on the same grid of
shapes (in->out), adapter counts L, ranks r, top-k and token counts N, in bfloat16. CUDA-event timing, median of
--runs after --warmup; extra memory = torch.cuda.max_memory_allocated() during the call minus what was allocated
before it. Writes a table and, with --json, every row.

Written for this project from the paper's description of the two formulations (no code copied).
"""
import argparse, json, statistics

import torch


def time_ms(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record(); e.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)


def extra_bytes(fn):
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del out
    return peak - before


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="4096x4096,4096x1024,4096x14336,14336x4096")
    ap.add_argument("--adapters", default="8,28,64,256")
    ap.add_argument("--ranks", default="8,16")
    ap.add_argument("--top-k", default="1,2")
    ap.add_argument("--tokens", default="1,16,256,4096")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    ints = lambda s: [int(x) for x in s.split(",")]
    dt, dev = torch.bfloat16, "cuda"
    torch.manual_seed(0)
    rows = []
    with torch.no_grad():
        for shape in a.shapes.split(","):
            i, o = (int(v) for v in shape.split("x"))
            for L in ints(a.adapters):
                for r in ints(a.ranks):
                    W = torch.randn(o, i, device=dev, dtype=dt) / i ** 0.5
                    G = torch.randn(L, i, device=dev, dtype=dt) / i ** 0.5
                    A = torch.randn(L, r, i, device=dev, dtype=dt) / i ** 0.5     # adapter e: A[e] (r, in)
                    B = torch.randn(L, o, r, device=dev, dtype=dt) * 0.02         # adapter e: B[e] (out, r)
                    scale = 2.0
                    for k in [k for k in ints(a.top_k) if k <= L]:
                        for n in ints(a.tokens):
                            x = torch.randn(n, i, device=dev, dtype=dt)

                            def route():
                                logits = x @ G.t()                                   # (N, L)
                                top, idx = logits.topk(k, dim=-1)
                                w = torch.ones_like(top, dtype=torch.float32) if k == 1 else (top.float()).softmax(-1)
                                return idx, w.to(dt)

                            def bare():
                                return x @ W.t()

                            def loop():
                                idx, w = route()
                                y = x @ W.t()
                                for e in range(L):
                                    hit = idx == e                                   # (N, k)
                                    rows_e = hit.any(-1).nonzero().squeeze(-1)
                                    if rows_e.numel() == 0:
                                        continue
                                    we = (w * hit).sum(-1)[rows_e].unsqueeze(-1)
                                    y.index_add_(0, rows_e, ((x[rows_e] @ A[e].t()) @ B[e].t()) * (we * scale))
                                return y

                            def gather():
                                idx, w = route()
                                y = x @ W.t()
                                a_sel = A[idx]                                       # (N, k, r, in)
                                b_sel = B[idx]                                       # (N, k, out, r)
                                h = torch.einsum("ni,nkri->nkr", x, a_sel)           # (N, k, r)
                                d = torch.einsum("nkr,nkor->nko", h, b_sel)          # (N, k, out)
                                return y + (d * (w.unsqueeze(-1) * scale)).sum(1)

                            ref = loop().float()
                            for name, fn in (("torch-bare", bare), ("torch-loop", loop), ("torch-gather", gather)):
                                err = None if name == "torch-bare" else ((fn().float() - ref).abs().max() / ref.abs().max()).item()
                                rows.append(dict(In=i, Out=o, Adapters=L, Rank=r, TopK=k, Tokens=n, Variant=name,
                                                 ms=time_ms(fn, a.warmup, a.runs), extra_bytes=extra_bytes(fn), rel_error_vs_loop=err))
                    del W, G, A, B
                    torch.cuda.empty_cache()
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, bfloat16, median of {a.runs} after {a.warmup}")
    print(f"{'in->out':>12} {'L':>4} {'r':>3} {'k':>2} {'N':>5} {'bare ms':>9} {'loop ms':>9} {'gather ms':>10} {'gather MB':>10}")
    by = {}
    for row in rows:
        by.setdefault((row["In"], row["Out"], row["Adapters"], row["Rank"], row["TopK"], row["Tokens"]), {})[row["Variant"]] = row
    for key, v in by.items():
        print(f"{key[0]:>6}->{key[1]:<5} {key[2]:>4} {key[3]:>3} {key[4]:>2} {key[5]:>5} {v['torch-bare']['ms']:>9.3f} "
              f"{v['torch-loop']['ms']:>9.3f} {v['torch-gather']['ms']:>10.3f} {v['torch-gather']['extra_bytes'] / 2**20:>10.1f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(torch=torch.__version__, gpu=torch.cuda.get_device_name(), rows=rows), f)


if __name__ == "__main__":
    main()
