# Shared by the kernel probes (gemv_variants.py, expand_variants.py, gate_logits.py): µs per call of fn(i), `launches` calls captured
# in one CUDA graph (so launch gaps are those of a replayed decode step, not the host's), replayed after a warm-up.
import torch


def timed(fn, launches, replays=10):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for i in range(2): fn(i)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(launches): fn(i)
    for _ in range(3): g.replay()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(replays): g.replay()
    b.record(); torch.cuda.synchronize()
    return a.elapsed_time(b) * 1000 / (replays * launches)
