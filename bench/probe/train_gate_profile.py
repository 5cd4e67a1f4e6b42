"""Device probe (issue #17): where the GPU time of a gate-training step goes, kernel by kernel.

A PyTorch replica of our training step (MeteoraLinear's training path, the same ATen ops in the same order: float32
gate logits from x.float(), training-form routing, dense mixing through a scattered routing matrix; RMSNorm in float32,
rotary, SDPA over repeated kv heads, SiLU·up, float32 LM cross-entropy, the stacked gate loss; gradients for the gates
only) on LLaMA-3-8B shapes with 28 random rank-8 adapters, bf16. Prints the CUDA-graph replay time of forward+backward
and libtorch's profiler table of one eager step (ops grouped with their input shapes, by GPU time) (kernels grouped by op and input shapes), so the share of each op class
can be read off. Usage: python3 bench/probe/train_gate_profile.py [batch]   (LAYERS=n for fewer layers;
VARIANT=bf16logits or nomix times what the float32 logits or the mixing cost; NOPROF=1 skips the profile)
"""
import os, sys, time
import torch
import torch.nn.functional as F

torch.manual_seed(0)
dev, dt = "cuda", torch.bfloat16
B = int(sys.argv[1]) if len(sys.argv) > 1 else 4
T, Hd, I, NH, NKV, D, V = 512, 4096, 14336, 32, 8, 128, 128256
LAYERS, L, R = int(os.environ.get("LAYERS", 32)), 28, 8
VARIANT = os.environ.get("VARIANT", "ours")


class Proj:
    def __init__(self, n_in, n_out):
        self.W = (torch.randn(n_out, n_in, device=dev) * 0.02).to(dt)
        self.A = (torch.randn(L * R, n_in, device=dev) * 0.02).to(dt)
        self.B = (torch.randn(n_out, L * R, device=dev) * 0.02).to(dt)
        self.G = (torch.randn(L, n_in, device=dev) * 0.1 / n_in ** 0.5).requires_grad_()
        self.owner = torch.arange(L, device=dev).repeat_interleave(R)

    def __call__(self, x, rec):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if VARIANT == "bf16logits":   # what the float32 logits cost: the gate rounded to bf16 (not our semantics)
            logits = F.linear(x2, self.G.to(dt)).float()
        else:
            logits = F.linear(x2.float(), self.G)                               # (N, L) float32
        probs = logits.softmax(-1)
        w, idx = probs.topk(2, -1)
        w = w / w.sum(-1, keepdim=True)
        rec.append(logits.view(*shape[:-1], L))
        y = F.linear(x2, self.W)
        if VARIANT == "nomix":        # what the dense mixing costs: routing weights used only through the gate loss
            return (y + 0 * w.sum()).view(*shape[:-1], -1)
        route = torch.zeros(x2.shape[0], L, device=dev).scatter(1, idx, w)     # (N, L)
        per_rank = route.index_select(1, self.owner).to(dt)                     # (N, L·r)
        z = (x2 @ self.A.t()) * per_rank
        return (y + z @ self.B.t()).view(*shape[:-1], -1)


def rms(x, w):
    h = x.float()
    h = h * torch.rsqrt(h.square().mean(-1, keepdim=True) + 1e-5)
    return w * h.to(x.dtype)


def rotate(x, cos, sin):
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return x * cos + torch.cat((-x2, x1), -1) * sin


layers = [dict(q=Proj(Hd, NH * D), k=Proj(Hd, NKV * D), v=Proj(Hd, NKV * D), o=Proj(NH * D, Hd),
               g=Proj(Hd, I), u=Proj(Hd, I), d=Proj(I, Hd),
               n1=torch.ones(Hd, device=dev, dtype=dt), n2=torch.ones(Hd, device=dev, dtype=dt)) for _ in range(LAYERS)]
emb = (torch.randn(V, Hd, device=dev) * 0.02).to(dt)
head = (torch.randn(V, Hd, device=dev) * 0.02).to(dt)
norm = torch.ones(Hd, device=dev, dtype=dt)
inv = 1.0 / (500000.0 ** (torch.arange(0, D, 2, device=dev).float() / D))
ang = torch.outer(torch.arange(T, device=dev).float(), inv)
cos, sin = torch.cat((ang, ang), -1).cos().to(dt), torch.cat((ang, ang), -1).sin().to(dt)

ids = torch.randint(0, V, (B, T), device=dev)
labels = torch.randint(0, V, (B, T), device=dev)
tasks = (torch.arange(B, device=dev) % L).unsqueeze(1).expand(B, T).contiguous()
mask = torch.ones(B, T, device=dev)


def step():
    rec = []
    h = emb[ids]
    for ly in layers:
        x = rms(h, ly["n1"])
        q = ly["q"](x, rec).view(B, T, NH, D).transpose(1, 2)
        k = ly["k"](x, rec).view(B, T, NKV, D).transpose(1, 2)
        v = ly["v"](x, rec).view(B, T, NKV, D).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        k, v = k.repeat_interleave(NH // NKV, 1), v.repeat_interleave(NH // NKV, 1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, NH * D)
        h = h + ly["o"](o, rec)
        x = rms(h, ly["n2"])
        h = h + ly["d"](F.silu(ly["g"](x, rec)) * ly["u"](x, rec), rec)
    logits = F.linear(rms(h, norm), head).float()
    lm = F.cross_entropy(logits.view(-1, V), labels.view(-1))
    gl = torch.stack(rec)                                                        # (P, B, T, L)
    picked = gl.log_softmax(-1).gather(-1, tasks.unsqueeze(-1).unsqueeze(0).expand(len(rec), -1, -1, 1)).squeeze(-1)
    gate = -(picked * mask).sum() / (mask.sum() * len(rec))
    (lm + 50 * gate).backward()


params = [p.G for ly in layers for p in (ly["q"], ly["k"], ly["v"], ly["o"], ly["g"], ly["u"], ly["d"])]
s = torch.cuda.Stream()
s.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(s):
    for _ in range(2):
        for p in params: p.grad = None
        step()
torch.cuda.current_stream().wait_stream(s)
g = torch.cuda.CUDAGraph()
for p in params: p.grad.zero_()
with torch.cuda.graph(g):
    step()
for _ in range(3): g.replay()
torch.cuda.synchronize()
t0 = time.perf_counter()
n = 10
for _ in range(n): g.replay()
torch.cuda.synchronize()
ms = (time.perf_counter() - t0) / n * 1e3
print(f"B={B} T={T} layers={LAYERS}: forward+backward replayed as a CUDA graph {ms:.1f} ms ({B * T / ms * 1e3:.0f} tok/s)")

if os.environ.get("NOPROF"): sys.exit(0)
from torch.profiler import profile, ProfilerActivity
for p in params: p.grad.zero_()
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
    step()
    torch.cuda.synchronize()
print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cuda_time_total", row_limit=50, max_name_column_width=40,
                                                         max_shapes_column_width=90))
