#!/usr/bin/env bash
# Quick model check: base / LoRA / MeteoRA top-2 prefill and decode, and transformers eager decode at batch 1.
set -uo pipefail
source bench/device-unpack.sh
nvidia-smi --query-gpu=name --format=csv,noheader
export PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync
timeout 400 $M bench model --device cuda --dtype bfloat16 --config llama3-8b --variants ${VARIANTS:-base,lora,top1,top2} --strategies auto \
  --prefill 1x2048,8x512 --decode 1,8,32 --prompt-len 512 --new-tokens 128 --runs 10 --warmup 8 --json "$OUT/model-ours.json" > "$OUT/model-ours.txt" 2> "$OUT/model-ours.log"
cat "$OUT/model-ours.txt"
unset PYTORCH_CUDA_ALLOC_CONF
timeout 150 python3 bench/reference/hf_llama_bench.py --attn eager --batch 1 --prompt-len 512 --new-tokens 128 --runs 5 --warmup 2 --json "$OUT/hf-eager.json" 2>&1 | tail -4
