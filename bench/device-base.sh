#!/usr/bin/env bash
# Device run for the foundation: CUDA parity of `forward` against the CPU and the fixture, then prefill/decode
# throughput of a LLaMA-3-8B-shaped random bf16 model, ours and transformers (eager, sdpa) on the same GPU.
# Run on a GPU machine from the repo root with device/meteora.tar.gz present (scripts/publish-device.sh).
set -euo pipefail
source bench/device-unpack.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

for p in 0 1 2; do
  ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$F/reference.json'))['prompts'][$p]['ids'])))")
  $M forward --device cuda --dtype float32 --model $F/base --ids "$ids" --out "$OUT/cuda$p.safetensors" 2>/dev/null
  $M forward --device cpu --model $F/base --ids "$ids" --out "$OUT/cpu$p.safetensors" 2>/dev/null
done
python3 - "$OUT" "$F" <<'PY' | tee "$OUT/parity.txt"
import sys
from safetensors.torch import load_file
out, f = sys.argv[1], sys.argv[2]
ref = load_file(f + "/reference.safetensors")
for p in range(3):
    a = load_file(f"{out}/cuda{p}.safetensors")["logits"]; b = load_file(f"{out}/cpu{p}.safetensors")["logits"]
    print(f"prompt {p}: max|cuda-cpu| = {(a-b).abs().max().item():.3g}, max|cuda-transformers| = {(a-ref[f'base.logits.{p}']).abs().max().item():.3g}")
PY

$M bench model --device cuda --config llama3-8b --batch 1 --prompt-len 512 --new-tokens 128 --runs 10 --warmup 2 --json "$OUT/ours.json" | tee "$OUT/ours.txt"
python3 bench/reference/hf_llama_bench.py --attn eager --batch 1 --prompt-len 512 --new-tokens 128 --runs 10 --warmup 2 --json "$OUT/hf-eager.json" | tee "$OUT/hf-eager.txt"
python3 bench/reference/hf_llama_bench.py --attn sdpa --batch 1 --prompt-len 512 --new-tokens 128 --runs 10 --warmup 2 --json "$OUT/hf-sdpa.json" | tee "$OUT/hf-sdpa.txt"
