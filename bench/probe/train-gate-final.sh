#!/usr/bin/env bash
# Device probe (issue #17): gate-training throughput and peak device memory, CUDA graph on and off in one call,
# LLaMA-3-8B shapes, 28 adapters r 8, bf16, 512-token rows, at the batch sizes in BATCHES (default 1 4 8; off only
# where OFF_BATCHES says). Usage: bash bench/probe/train-gate-final.sh   (results in $OUT)
set -euo pipefail
source bench/device-unpack.sh
for b in ${BATCHES:-1 4 8}; do
  $M bench train-gate --device cuda --dtype bfloat16 --config llama3-8b --adapters 28 --rank 8 --seq-len 512 --batch-size $b \
    --steps ${STEPS:-20} --warmup 5 --cuda-graph on --json "$OUT/graph-b$b.json" > "$OUT/graph-b$b.txt" 2>&1 || echo "graph b$b failed: $(tail -1 $OUT/graph-b$b.txt)"
done
for b in ${OFF_BATCHES:-4 8}; do
  $M bench train-gate --device cuda --dtype bfloat16 --config llama3-8b --adapters 28 --rank 8 --seq-len 512 --batch-size $b \
    --steps ${STEPS:-20} --warmup 5 --cuda-graph off --json "$OUT/eager-b$b.json" > "$OUT/eager-b$b.txt" 2>&1 || echo "eager b$b failed"
done
python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import glob, json, os, sys
for p in sorted(glob.glob(os.path.join(sys.argv[1], "*-b*.json"))):
    r = json.load(open(p))
    print(f"{os.path.basename(p)[:-5]:9s} {r['tokens_per_s']:8.0f} tok/s  {r['seconds_per_step']*1e3:7.1f} ms/step  peak {r['peak_device_bytes']/2**30:6.2f} GiB")
PY
