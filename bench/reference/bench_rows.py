"""The result rows and the table shared by the PyTorch reference benchmarks (hf_llama_bench.py, gptfast_anchor.py):
one row per (variant, batch), in the JSON format `docs/measurements/` keeps, and the printed table."""


def result(variant, batch, prompt_len, new_tokens, prefill_s, decode_s):
    """One measured row: median prefill seconds of batch x prompt_len tokens (None: not timed), median seconds of
    new_tokens decode steps."""
    return dict(variant=variant, batch=batch, prompt_len=prompt_len, new_tokens=new_tokens,
                prefill_s=prefill_s, decode_s=decode_s, prefill_tok_s=None if prefill_s is None else batch * prompt_len / prefill_s,
                decode_tok_s=batch * new_tokens / decode_s)


def print_table(results, variant_width=16):
    print(f"{'variant':{variant_width}} {'batch':>5} {'prompt':>6} {'prefill tok/s':>14} {'prefill ms':>11} {'new':>4} "
          f"{'decode tok/s':>13} {'ms/step':>8}")
    for r in results:
        timed = r['prefill_s'] is not None
        prefill = f"{r['prefill_tok_s']:>14.0f} {r['prefill_s'] * 1e3:>11.2f}" if timed else f"{'-':>14} {'-':>11}"
        print(f"{r['variant']:{variant_width}} {r['batch']:>5} {r['prompt_len']:>6} {prefill} {r['new_tokens']:>4} "
              f"{r['decode_tok_s']:>13.1f} {r['decode_s'] * 1e3 / r['new_tokens']:>8.2f}")
