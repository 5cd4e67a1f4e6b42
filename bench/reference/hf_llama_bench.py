#!/usr/bin/env python3
"""Hugging Face transformers reference for `meteora bench model`: the same LLaMA shapes with random bfloat16
weights, prefill tokens/s (one forward over B x P prompt tokens, last-position logits) and decode tokens/s
(N greedy steps over the KV cache, each token read on the host as generation does). Median of --runs after
--warmup, synchronised CUDA timing. Prints a table and writes JSON with --json.

Usage: python3 bench/reference/hf_llama_bench.py --attn eager --batch 1 --prompt-len 512 --new-tokens 128
"""
import argparse, json, statistics, time

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from bench_rows import print_table, result

LLAMA3_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=8, head_dim=128, vocab_size=128256, rms_norm_eps=1e-5,
                 max_position_embeddings=131072, rope_theta=500000.0,
                 rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                   original_max_position_embeddings=8192), tie_word_embeddings=False)


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attn", default="eager", choices=["eager", "sdpa"])
    ap.add_argument("--batch", type=int, nargs="+", default=[1])
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()

    torch.manual_seed(0)
    config = LlamaConfig(**LLAMA3_8B)
    config._attn_implementation = a.attn
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config)
    model.eval()
    torch.set_default_dtype(torch.float32)

    results = []
    for b in a.batch:
        ids = torch.randint(0, config.vocab_size, (b, a.prompt_len), device="cuda")

        def prefill():
            return model(input_ids=ids, use_cache=True, logits_to_keep=1)

        with torch.no_grad():
            for _ in range(a.warmup):
                timed(prefill)
            pre = statistics.median(timed(prefill) for _ in range(a.runs))

            dec_times = []
            for r in range(a.warmup + a.runs):
                out = prefill()
                past = out.past_key_values
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)

                def decode():
                    nonlocal past, nxt
                    for _ in range(a.new_tokens):
                        o = model(input_ids=nxt, past_key_values=past, use_cache=True)
                        past = o.past_key_values
                        nxt = o.logits[:, -1].argmax(-1, keepdim=True)
                        nxt.cpu()

                t = timed(decode)
                if r >= a.warmup:
                    dec_times.append(t)
            dec = statistics.median(dec_times)
        results.append(result(f"hf-{a.attn}", b, a.prompt_len, a.new_tokens, pre, dec))

    print(f"transformers {transformers.__version__}, torch {torch.__version__}, {torch.cuda.get_device_name()}, "
          f"attn={a.attn}, bfloat16")
    print_table(results, 10)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(transformers=transformers.__version__, torch=torch.__version__,
                           gpu=torch.cuda.get_device_name(), attn=a.attn, results=results), f, indent=2)


if __name__ == "__main__":
    main()
