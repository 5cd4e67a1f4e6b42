#!/usr/bin/env bash
# Device run for the MeteoRA model and gate training: CUDA parity of MeteoRA forward (float32, every strategy)
# with the fixture reference, and train-gate throughput and peak device memory for a LLaMA-3-8B-shaped random
# model with 28 random rank-8 adapters on all 7 projections, bfloat16, 512-token sequences, 50 steps.
set -euo pipefail
source bench/device-unpack.sh
ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$F/reference.json'))['prompts'][0]['ids'])))")
for s in loop gather dense segment; do
  $M forward --device cuda --dtype float32 --model $F/base --meteora $F/meteora --top-k 2 --strategy $s --ids "$ids" --out /tmp/m-$s.safetensors 2>/dev/null
done
python3 - "$F" <<'PY' | tee "$OUT/meteora-cuda-parity.txt"
import sys
from safetensors.torch import load_file
ref = load_file(sys.argv[1] + "/reference.safetensors")["meteora.k2.T1.logits.0"]
for s in ("loop", "gather", "dense", "segment"):
    got = load_file(f"/tmp/m-{s}.safetensors")["logits"]
    print(f"meteora k2 T1 prompt 0, cuda float32, {s}: max |ours - transformers| = {(got - ref).abs().max().item():.3g}")
PY
$M bench train-gate --device cuda --dtype bfloat16 --config llama3-8b --adapters 28 --rank 8 --seq-len 512 --batch-size 1 --steps 50 --warmup 5 --json "$OUT/train-gate.json" 2>&1 | tee "$OUT/train-gate.txt"
$M bench train-gate --device cuda --dtype bfloat16 --config llama3-8b --adapters 28 --rank 8 --seq-len 512 --batch-size 4 --steps 30 --warmup 5 --json "$OUT/train-gate-b4.json" 2>&1 | tee "$OUT/train-gate-b4.txt"
