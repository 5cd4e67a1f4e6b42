# Diagnostic: per-call SDPA time for decode-shaped queries as the key length grows (a new length every call),
# against repeating lengths, per backend.
import time, torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
dev = "cuda"
cache_k = torch.randn(1, 8, 1024, 128, device=dev, dtype=torch.bfloat16)
cache_v = torch.randn_like(cache_k)
q = torch.randn(1, 8, 4, 128, device=dev, dtype=torch.bfloat16)
print("cudnn sdp enabled:", torch.backends.cuda.cudnn_sdp_enabled(), "flash:", torch.backends.cuda.flash_sdp_enabled(), "mem_eff:", torch.backends.cuda.mem_efficient_sdp_enabled())
def run(label, lengths, ctx=None):
    ts = []
    for S in lengths:
        k = cache_k.narrow(2, 0, S); v = cache_v.narrow(2, 0, S)
        torch.cuda.synchronize(); t = time.perf_counter()
        if ctx is None: F.scaled_dot_product_attention(q, k, v)
        else:
            with sdpa_kernel(ctx): F.scaled_dot_product_attention(q, k, v)
        torch.cuda.synchronize(); ts.append((time.perf_counter() - t) * 1e3)
    ts.sort(); print(f"{label}: median {ts[len(ts)//2]:.3f} ms, max {ts[-1]:.3f} ms")
run("default, new lengths", range(513, 577))
run("default, same lengths again", range(513, 577))
for b in [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]:
    try: run(f"{b.name}, new lengths", range(577 + 64 * b.value, 577 + 64 * b.value + 40), [b])
    except Exception as e: print(b.name, "error", str(e)[:100])
