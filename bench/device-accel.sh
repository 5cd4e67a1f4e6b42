#!/usr/bin/env bash
# Device run for forward acceleration, in two parts that each fit one device call (PART=1 or 2; default both):
#  1. the layer benchmark (ours: every strategy, CUDA events, memory from the cudaMallocAsync pool; the PyTorch eager
#     reference of the original loop and gather-bmm), then the model benchmark's throughput with PyTorch's native
#     caching allocator (base, one adapter, MeteoRA top-1/top-2 with the default strategy);
#  2. the model benchmark with the cudaMallocAsync pool for peak memory (every strategy) and transformers eager.
# The pool allocator costs ~10 ms per eager decode step at batch 1 (measured), so throughput comes from part 1.
# Decode is measured as CUDA-graph replay (bench model's default on CUDA); bench/device-graph.sh also times eager steps.
set -uo pipefail
source bench/device-unpack.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
MODEL="--device cuda --dtype bfloat16 --config llama3-8b --prefill 1x2048,8x512 --decode 1,8,32 --prompt-len 512"
if [ "${PART:-1}" = 1 ] || [ -z "${PART:-}" ]; then
  PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync $M bench layer --device cuda --dtype bfloat16 --adapters ${LAYER_L:-28} --ranks 8 --top-k 2 \
    --runs 10 --warmup 3 --json "$OUT/layer-ours.json" > "$OUT/layer-ours.txt" 2> "$OUT/layer-ours.log"
  cat "$OUT/layer-ours.txt"
  python3 bench/reference/meteora_layer_bench.py --adapters ${LAYER_L:-28} --ranks 8 --top-k 2 --runs 10 --warmup 3 --json "$OUT/layer-torch.json" > "$OUT/layer-torch.txt"
  tail -20 "$OUT/layer-torch.txt"
  $M bench model $MODEL --variants base,lora,top1,top2 --strategies auto --new-tokens 128 --runs 10 --warmup 16 \
    --json "$OUT/model-ours.json" > "$OUT/model-ours.txt" 2> "$OUT/model-ours.log"
  cat "$OUT/model-ours.txt"
fi
if [ "${PART:-2}" = 2 ] || [ -z "${PART:-}" ]; then
  PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync $M bench model $MODEL --variants base,lora,top1,top2 --strategies ${STRATEGIES:-auto,dense,segment,gather,loop} \
    --new-tokens 32 --runs 5 --warmup 8 --json "$OUT/model-pool.json" > "$OUT/model-pool.txt" 2> "$OUT/model-pool.log"
  cat "$OUT/model-pool.txt"
  python3 bench/reference/hf_llama_bench.py --attn eager --batch 1 8 32 --prompt-len 512 --new-tokens 128 --runs 5 --warmup 2 --json "$OUT/hf-eager-decode.json" | tee "$OUT/hf-eager-decode.txt"
  python3 bench/reference/hf_llama_bench.py --attn eager --batch 1 --prompt-len 2048 --new-tokens 1 --runs 10 --warmup 2 --json "$OUT/hf-eager-prefill2048.json" | tee "$OUT/hf-eager-prefill2048.txt"
fi
