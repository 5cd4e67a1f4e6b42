#!/usr/bin/env bash
# Device probe (issue #17): where a gate-training step's time goes on LLaMA-3-8B shapes, 28 adapters r 8, bf16:
# `bench train-gate --phases` at 1 × 512 and 4 × 512 (throughput run, then a run synchronised at every phase
# boundary). Usage: bash bench/probe/train-gate-phases.sh   (results in $OUT)
set -euo pipefail
source bench/device-unpack.sh
for b in ${BATCHES:-4 1}; do
  $M bench train-gate --device cuda --dtype bfloat16 --config llama3-8b --adapters 28 --rank 8 --seq-len 512 --batch-size $b \
    --steps ${STEPS:-20} --warmup 5 --phases --json "$OUT/train-gate-b$b.json" 2>&1 | tee "$OUT/train-gate-b$b.txt"
done
