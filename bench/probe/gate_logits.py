# The float32 gate logits kernel (src/Meteora/Moe/GateLogitsKernel.cs, exact ranking at prefill sizes) on a GPU, from
# the C# source itself: its logits against float64 (within twice float32's summation bound; SGEMM's error beside), the same bits twice in a row
# (the tickets reset) and for a token alone as in a batch, and its time against what it replaces,
# linear(x.to(float32), G) (a widened copy and cuBLAS's SGEMM), per call in a CUDA graph. On a GPU machine with torch
# and CuPy, from the repository root:   python3 bench/probe/gate_logits.py [--time-only]
import re, sys
from graph_timing import timed
from csharp_source import raw
import cupy as cp, torch

src = raw("src/Meteora/Runtime/Bf16Device.cs", "Prelude") + raw("src/Meteora/Moe/GateLogitsKernel.cs", "Source")
consts = open("src/Meteora/Moe/GateLogitsKernel.cs").read()
W, TPB, LR, SLICE = (int(re.search(n + r" = (\d+)", consts).group(1)) for n in ("Warps", "TokensPerBlock", "RowsPerBlock", "SliceInputs"))
kern = cp.RawModule(code=src, options=("-std=c++14",)).get_function("meteora_gate_logits_bf16")
tickets = torch.zeros(65536 // TPB * 8, dtype=torch.int32, device="cuda")

def logits(x, G):
    n, inF = x.shape; L = G.shape[0]
    slices = (inF + SLICE - 1) // SLICE
    out = torch.empty(n, L, dtype=torch.float32, device="cuda")
    part = torch.empty(slices, n, L, dtype=torch.float32, device="cuda") if slices > 1 else None
    grid = ((n + TPB - 1) // TPB) * slices * ((L + LR - 1) // LR)
    with cp.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream):   # torch's stream: in order, and captured
        kern((grid,), (32 * W,), (x.data_ptr(), cp.int64(x.stride(0)), cp.int32(n), cp.int32(inF), G.data_ptr(), cp.int32(L),
             out.data_ptr(), part.data_ptr() if part is not None else 0, tickets.data_ptr()))
    return out

CHECK = '--time-only' not in sys.argv
torch.manual_seed(0)
bad = 0
for inF in (4096, 14336, 1032, 24, 8):
    for L in (28, 5, 40, 256):
        for n in ((2, 33, 512, 4096) if CHECK else ()):
            x = torch.randn(n, inF + 8, device="cuda").to(torch.bfloat16)[:, :inF]   # rows further apart than in
            G = torch.randn(L, inF, device="cuda") * 0.05
            y = logits(x, G)
            ref = x.double() @ G.double().t()
            # Twice float32's summation bound n·2⁻²⁴·Σ|x||g|: the tensor cores' float32 additions truncate rather than round.
            bound = (x.double().abs() @ G.double().abs().t()) * (2 * (inF + 2) * 2.0 ** -24)
            ok = bool(((y.double() - ref).abs() <= bound).all())
            sgemm_err = float(((x.float() @ G.t()).double() - ref).abs().max())
            same = torch.equal(logits(x, G), y) and torch.equal(logits(x[-1:].contiguous(), G), y[-1:])
            clean = int(tickets.abs().sum()) == 0
            rank = (y.topk(min(2, L), -1).indices.sort(-1).values == (x.float() @ G.t()).topk(min(2, L), -1).indices.sort(-1).values).all(-1).float().mean().item()
            if not (ok and same and clean): bad += 1
            print(f"in {inF:5d} L {L:3d} n {n:4d}: within float32's bound {ok}, same bits twice and alone {same}, tickets reset {clean}, "
                  f"top-2 as cuBLAS's float32 {rank:.4f}, max |err| {float((y.double() - ref).abs().max()):.2e} (SGEMM's {sgemm_err:.2e})")
if CHECK:
    # An infinite gate value stays infinite (not NaN) where x is finite and non-zero.
    x = torch.randn(4, 2048, device="cuda").to(torch.bfloat16); G = torch.randn(3, 2048, device="cuda") * 0.05
    G[1, 7] = float("inf")
    y = logits(x, G)
    inf_ok = bool(torch.isinf(y[:, 1]).all()) and bool(torch.isfinite(y[:, [0, 2]]).all())
    print(f"an infinite gate value gives ±inf in its row only: {inf_ok}")
    if not inf_ok: bad += 1
    print("ALL OK" if bad == 0 else f"{bad} CASES FAILED")

print(torch.cuda.get_device_name(), "µs per call in a CUDA graph (28 adapters)")
for n in (512, 4096):
    for inF in (4096, 14336):
        copies = 8
        xs = [torch.randn(n, inF, device="cuda").to(torch.bfloat16) for _ in range(copies)]
        G = torch.randn(28, inF, device="cuda") * 0.05
        t_kernel = timed(lambda i: logits(xs[i % copies], G), 32)
        t_aten = timed(lambda i: torch.nn.functional.linear(xs[i % copies].float(), G), 32)
        print(f"  n {n:4d}, in {inF:5d}: kernel {t_kernel:7.2f}   linear(x.float(), G) {t_aten:7.2f}   ({t_aten / t_kernel:.1f}×)")
