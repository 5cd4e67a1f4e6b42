#!/usr/bin/env bash
# Device probe (issue #17): gate training with each step replayed from one CUDA graph against step by step, on
# LLaMA-3-8B shapes (28 adapters r 8, bf16, 512-token rows): throughput at batch 1 and 4, the phases of the eager
# step, and the per-step training losses of the two runs side by side (same seed and data: they must agree).
# Usage: bash bench/probe/train-gate-graph.sh   (results in $OUT)
set -euo pipefail
source bench/device-unpack.sh
for b in ${BATCHES:-4 1}; do
  for g in off on; do
    $M bench train-gate --device cuda --dtype bfloat16 --config ${CONFIG:-llama3-8b} --adapters 28 --rank 8 --seq-len 512 --batch-size $b \
      --steps ${STEPS:-20} --warmup 5 --cuda-graph $g --json "$OUT/train-gate-b$b-$g.json" 2>&1 | tee "$OUT/train-gate-b$b-$g.txt"
  done
  python3 - "$OUT/train-gate-b$b-off.json" "$OUT/train-gate-b$b-on.json" <<'PY' | tee "$OUT/train-gate-b$b-compare.txt"
import json, sys
off, on = (json.load(open(p)) for p in sys.argv[1:3])
worst = max(abs(a - b) / max(abs(a), 1e-9) for a, b in zip(off["losses"], on["losses"]))
print(f"batch {off['batch']}: step by step {off['tokens_per_s']:.0f} tok/s ({off['seconds_per_step']*1e3:.1f} ms/step), "
      f"CUDA graph {on['tokens_per_s']:.0f} tok/s ({on['seconds_per_step']*1e3:.1f} ms/step): {on['tokens_per_s']/off['tokens_per_s']:.2f}x")
print("losses off:", " ".join(f"{x:.5f}" for x in off["losses"]))
print("losses on: ", " ".join(f"{x:.5f}" for x in on["losses"]))
print(f"largest relative loss difference over {len(off['losses'])} steps: {worst:.3g}")
PY
done
