#!/usr/bin/env python3
"""The gpt-fast-style PyTorch anchor for `meteora bench model` (issue #17, item 4), written here from the idea:
a minimal LLaMA-3 (fused QKV and gate/up projections, RMSNorm, rotary with llama3 scaling, SDPA over a static KV
cache under a causal mask), random bfloat16 weights of the given shapes. Prefill: one forward over B x P prompt
tokens, last-position logits; decode: N greedy steps over the static cache, each token read on the host as
`meteora generate` does (--no-host-read keeps them on the GPU, as gpt-fast's own loop does). Modes: `eager`, and
`compiled` = torch.compile(mode="reduce-overhead", fullgraph) around one decode step (CUDA graphs) and
torch.compile(mode="max-autotune-no-cudagraphs") around prefill. Median of --runs after --warmup, synchronised
timing. Prints a table; --json writes the rows in hf_llama_bench.py's format.

Usage: python3 bench/reference/gptfast_anchor.py --mode eager compiled --batch 1 8 --prompt-len 512 --new-tokens 128
"""
import argparse, json, math, os, statistics, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench_rows import print_table, result

LLAMA3_8B = dict(dim=4096, inter=14336, layers=32, heads=32, kv_heads=8, head_dim=128, vocab=128256, eps=1e-5,
                 theta=500000.0, rope_factor=8.0, low_freq=1.0, high_freq=4.0, original_max=8192)
TINY = dict(LLAMA3_8B, dim=256, inter=704, layers=2, heads=8, kv_heads=4, head_dim=32, vocab=1024)   # a CPU smoke test


def rope_table(c, max_seq, device):
    """(max_seq, head_dim / 2, 2) cos/sin with llama3's frequency scaling."""
    inv = 1.0 / c["theta"] ** (torch.arange(0, c["head_dim"], 2, device=device).float() / c["head_dim"])
    wavelen = 2 * math.pi / inv
    low, high = c["original_max"] / c["low_freq"], c["original_max"] / c["high_freq"]
    smooth = (c["original_max"] / wavelen - c["low_freq"]) / (c["high_freq"] - c["low_freq"])
    scaled = torch.where(wavelen > low, inv / c["rope_factor"], inv)
    mid = (wavelen <= low) & (wavelen >= high)
    inv = torch.where(mid, (1 - smooth) * inv / c["rope_factor"] + smooth * inv, scaled)
    angles = torch.outer(torch.arange(max_seq, device=device).float(), inv)          # (S, D/2)
    return torch.stack([angles.cos(), angles.sin()], -1)                            # (S, D/2, 2)


def rotate(x, rope):
    """x (B, T, H, D), rope (T, D/2, 2): rotate-half rotary as HF LLaMA applies it."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d].float(), x[..., d:].float()
    cos, sin = rope[None, :, None, :, 0], rope[None, :, None, :, 1]                  # (1, T, 1, D/2)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).type_as(x)


class Block(nn.Module):
    def __init__(self, c, batch, max_seq, dtype):
        super().__init__()
        self.c = c
        qkv = (c["heads"] + 2 * c["kv_heads"]) * c["head_dim"]
        self.wqkv = nn.Linear(c["dim"], qkv, bias=False)                             # fused q, k, v
        self.wo = nn.Linear(c["heads"] * c["head_dim"], c["dim"], bias=False)
        self.w13 = nn.Linear(c["dim"], 2 * c["inter"], bias=False)                    # fused gate, up
        self.w2 = nn.Linear(c["inter"], c["dim"], bias=False)
        self.n1, self.n2 = nn.RMSNorm(c["dim"], eps=c["eps"]), nn.RMSNorm(c["dim"], eps=c["eps"])
        shape = (batch, c["kv_heads"], max_seq, c["head_dim"])
        self.register_buffer("k", torch.zeros(shape, dtype=dtype), persistent=False)  # static KV cache
        self.register_buffer("v", torch.zeros(shape, dtype=dtype), persistent=False)

    def forward(self, x, rope, mask, pos):                                            # x (B, T, dim), pos (T,)
        c, (B, T, _) = self.c, x.shape
        q, k, v = self.wqkv(self.n1(x)).split([c["heads"] * c["head_dim"], c["kv_heads"] * c["head_dim"],
                                               c["kv_heads"] * c["head_dim"]], -1)
        q = rotate(q.view(B, T, c["heads"], c["head_dim"]), rope).transpose(1, 2)    # (B, H, T, D)
        k = rotate(k.view(B, T, c["kv_heads"], c["head_dim"]), rope).transpose(1, 2)  # (B, Hkv, T, D)
        self.k[:, :, pos] = k
        self.v[:, :, pos] = v.view(B, T, c["kv_heads"], c["head_dim"]).transpose(1, 2)
        rep = c["heads"] // c["kv_heads"]                                                # GQA as gpt-fast does it
        y = F.scaled_dot_product_attention(q, self.k.repeat_interleave(rep, 1), self.v.repeat_interleave(rep, 1),
                                           attn_mask=mask)                                    # (B, H, T, D)
        x = x + self.wo(y.transpose(1, 2).reshape(B, T, -1))
        gate, up = self.w13(self.n2(x)).chunk(2, -1)
        return x + self.w2(F.silu(gate) * up)


class Llama(nn.Module):
    def __init__(self, c, batch, max_seq, dtype):
        super().__init__()
        self.embed = nn.Embedding(c["vocab"], c["dim"])
        self.blocks = nn.ModuleList(Block(c, batch, max_seq, dtype) for _ in range(c["layers"]))
        self.norm = nn.RMSNorm(c["dim"], eps=c["eps"])
        self.head = nn.Linear(c["dim"], c["vocab"], bias=False)
        self.register_buffer("rope", rope_table(c, max_seq, None), persistent=False)
        self.register_buffer("causal", torch.ones(max_seq, max_seq, dtype=torch.bool).tril(), persistent=False)

    def forward(self, ids, pos):                                                      # ids (B, T), pos (T,)
        x, rope, mask = self.embed(ids), self.rope[pos], self.causal[None, None, pos]  # mask (1, 1, T, S)
        for b in self.blocks:
            x = b(x, rope, mask, pos)
        return self.head(self.norm(x[:, -1:]))                                       # (B, 1, V): last position only


def prefill(model, ids, pos):
    return model(ids, pos).argmax(-1)                                                 # (B, 1)


def decode_one(model, tok, pos):
    return model(tok, pos).argmax(-1)                                                 # (B, 1)


@torch.no_grad()
def check_against_transformers(device):
    """The anchor computes LLaMA: on the tiny config in float32, with transformers' weights copied in (fused), its
    prefill logits and one cached decode step match transformers' LlamaForCausalLM. Returns the largest difference."""
    from transformers import LlamaConfig, LlamaForCausalLM
    c, T = TINY, 40
    cfg = LlamaConfig(hidden_size=c["dim"], intermediate_size=c["inter"], num_hidden_layers=c["layers"],
                      num_attention_heads=c["heads"], num_key_value_heads=c["kv_heads"], head_dim=c["head_dim"],
                      vocab_size=c["vocab"], rms_norm_eps=c["eps"], rope_theta=c["theta"], tie_word_embeddings=False,
                      rope_scaling=dict(rope_type="llama3", factor=c["rope_factor"], low_freq_factor=c["low_freq"],
                                        high_freq_factor=c["high_freq"], original_max_position_embeddings=c["original_max"]))
    torch.manual_seed(0)
    hf = LlamaForCausalLM(cfg).to(device).float().eval()
    with torch.device(device):
        m = Llama(c, 2, T + 1, torch.float32)
    m.rope = rope_table(c, T + 1, device)
    h = hf.model
    m.embed.weight.copy_(h.embed_tokens.weight); m.norm.weight.copy_(h.norm.weight); m.head.weight.copy_(hf.lm_head.weight)
    for blk, layer in zip(m.blocks, h.layers):
        at, mlp = layer.self_attn, layer.mlp
        blk.wqkv.weight.copy_(torch.cat([at.q_proj.weight, at.k_proj.weight, at.v_proj.weight]))
        blk.wo.weight.copy_(at.o_proj.weight)
        blk.w13.weight.copy_(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]))
        blk.w2.weight.copy_(mlp.down_proj.weight)
        blk.n1.weight.copy_(layer.input_layernorm.weight); blk.n2.weight.copy_(layer.post_attention_layernorm.weight)
    ids = torch.randint(0, c["vocab"], (2, T + 1), device=device)
    pre = (m(ids[:, :T], torch.arange(T, device=device))[:, -1] - hf(ids[:, :T]).logits[:, -1]).abs().max().item()
    step = (m(ids[:, T:], torch.tensor([T], device=device))[:, -1] - hf(ids).logits[:, -1]).abs().max().item()
    return max(pre, step)


def timed(fn, device):
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync(); t = time.perf_counter(); fn(); sync()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    ap.add_argument("--batch", type=int, nargs="+", default=[1])
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--config", default="llama3-8b", choices=["llama3-8b", "tiny"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--no-host-read", action="store_true", help="keep decoded tokens on the device (gpt-fast's loop)")
    ap.add_argument("--check", action="store_true", help="only check the model against transformers (tiny, float32)")
    ap.add_argument("--decode-only", action="store_true",
                    help="time decode only: prefill runs eagerly to fill the cache and is not timed (skips max-autotune's minutes)")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.check:
        diff = check_against_transformers(a.device)
        print(f"gpt-fast-style anchor vs transformers (tiny, float32, prefill + one cached step): max |logit diff| {diff:.3g}")
        raise SystemExit(0 if diff < 1e-3 else 1)
    c = LLAMA3_8B if a.config == "llama3-8b" else TINY
    dtype, results = torch.bfloat16, []
    for b in a.batch:
        torch.manual_seed(0)
        max_seq = a.prompt_len + a.new_tokens
        with torch.device(a.device):
            model = Llama(c, b, max_seq, dtype).to(dtype)
        model.rope = rope_table(c, max_seq, a.device)                                     # keep the rotary table float32
        for p in model.parameters():
            nn.init.normal_(p, std=0.02) if p.dim() > 1 else nn.init.ones_(p)        # HF's initializer_range
        model.eval()
        ids = torch.randint(0, c["vocab"], (b, a.prompt_len), device=a.device)
        prompt_pos = torch.arange(a.prompt_len, device=a.device)
        for mode in a.mode:
            pre_fn, dec_fn = prefill, decode_one
            if mode == "compiled":
                torch._dynamo.reset()
                if not a.decode_only:
                    pre_fn = torch.compile(prefill, mode="max-autotune-no-cudagraphs", dynamic=False)
                dec_fn = torch.compile(decode_one, mode="reduce-overhead", fullgraph=True)
            with torch.inference_mode():
                pre = None
                if not a.decode_only:
                    for _ in range(a.warmup):
                        timed(lambda: pre_fn(model, ids, prompt_pos), a.device)
                    pre = statistics.median(timed(lambda: pre_fn(model, ids, prompt_pos), a.device) for _ in range(a.runs))
                steps = []
                for r in range(a.warmup + a.runs):
                    tok = pre_fn(model, ids, prompt_pos)

                    def decode():
                        nonlocal tok
                        for i in range(a.new_tokens):
                            pos = torch.tensor([a.prompt_len + i], device=a.device)
                            tok = dec_fn(model, tok.clone(), pos)                  # clone: the graph's output is reused
                            if not a.no_host_read:
                                tok.cpu()

                    t = timed(decode, a.device)
                    if r >= a.warmup:
                        steps.append(t)
                dec = statistics.median(steps)
            results.append(result(f"gptfast-{mode}", b, a.prompt_len, a.new_tokens, pre, dec))
            r = results[-1]                                   # each row as soon as it is measured: a run cut short keeps it
            prefill_text = "not timed" if r['prefill_tok_s'] is None else f"{r['prefill_tok_s']:.0f} tok/s"
            print(f"{r['variant']} b{b}: prefill {prefill_text}, decode {r['decode_tok_s']:.1f} tok/s",
                  file=sys.stderr, flush=True)
            write_json(a, results)
        del model
    gpu = torch.cuda.get_device_name() if a.device == "cuda" else a.device
    print(f"gpt-fast-style anchor, torch {torch.__version__}, {gpu}, {a.config}, bfloat16"
          f"{', tokens kept on the device' if a.no_host_read else ', each token read on the host'}")
    print_table(results, 16)
    write_json(a, results)


def write_json(a, results):
    if not a.json:
        return
    gpu = torch.cuda.get_device_name() if a.device == "cuda" else a.device
    with open(a.json + ".tmp", "w") as f:
        json.dump(dict(torch=torch.__version__, gpu=gpu, config=a.config, host_read=not a.no_host_read,
                       results=results), f, indent=2)
    os.replace(a.json + ".tmp", a.json)


if __name__ == "__main__":
    main()
