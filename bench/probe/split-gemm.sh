#!/usr/bin/env bash
# Crossover of MeteoraLinear.SplitGemmMinTokens: the layer benchmark with the dense kernel path always split
# (base GEMM + [A; G] GEMM) and never split (one GEMM over [W; A; G]), then model prefill/decode both ways.
set -uo pipefail
source bench/device-unpack.sh
nvidia-smi --query-gpu=name --format=csv,noheader
for split in 1 100000000; do
  echo "== layer, METEORA_SPLIT_GEMM_MIN_TOKENS=$split"
  METEORA_SPLIT_GEMM_MIN_TOKENS=$split timeout 200 $M bench layer --device cuda --dtype bfloat16 --adapters 28 --ranks 8 --top-k 2 \
    --tokens 1,16,256,1024,2048,4096 --runs 20 --warmup 5 --json "$OUT/layer-split$split.json" 2>/dev/null | cut -c1-60,100-130
done
for split in 1 100000000; do
  echo "== model, METEORA_SPLIT_GEMM_MIN_TOKENS=$split"
  METEORA_SPLIT_GEMM_MIN_TOKENS=$split timeout 200 $M bench model --device cuda --dtype bfloat16 --config llama3-8b --prompt-len 512 \
    --prefill 1x512,1x2048,8x512 --decode 1,32 --new-tokens 64 --runs 10 --warmup 8 --variants base,top2 --decode-mode graph 2>/dev/null
done
