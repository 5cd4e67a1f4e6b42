#!/usr/bin/env bash
# Device run for forward acceleration: the layer benchmark (ours, every strategy, and the PyTorch eager reference
# of the original loop and gather-bmm) and the model benchmark (base, one adapter, MeteoRA top-1/top-2 with each
# strategy, and transformers eager for the base), all on one GPU in one call. Memory figures come from the
# cudaMallocAsync pool, so our runs use that allocator backend.
set -euo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ -d /tmp/meteora ] || tar xzf device/meteora.tar.gz -C /tmp
source scripts/device-env.sh
M=/tmp/meteora/Meteora.Cli
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt"
export PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync
$M bench layer --device cuda --dtype bfloat16 --runs ${RUNS:-10} --warmup 3 --json "$OUT/layer-ours.json" > "$OUT/layer-ours.txt" 2> "$OUT/layer-ours.log"
tail -5 "$OUT/layer-ours.txt"
unset PYTORCH_CUDA_ALLOC_CONF
python3 bench/reference/meteora_layer_bench.py --runs ${RUNS:-10} --warmup 3 --json "$OUT/layer-torch.json" > "$OUT/layer-torch.txt"
export PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync
$M bench model --device cuda --dtype bfloat16 --config llama3-8b --variants base,lora,top1,top2 --strategies ${STRATEGIES:-auto,dense,segment,gather,loop} \
  --prefill 1x2048,8x512 --decode 1,8,32 --prompt-len 512 --new-tokens 128 --runs 10 --warmup 2 --json "$OUT/model-ours.json" > "$OUT/model-ours.txt" 2> "$OUT/model-ours.log"
cat "$OUT/model-ours.txt"
unset PYTORCH_CUDA_ALLOC_CONF
python3 bench/reference/hf_llama_bench.py --attn eager --batch 1 8 32 --prompt-len 512 --new-tokens 128 --runs 10 --warmup 2 --json "$OUT/hf-eager-decode.json" | tee "$OUT/hf-eager-decode.txt"
python3 bench/reference/hf_llama_bench.py --attn eager --batch 1 --prompt-len 2048 --new-tokens 1 --runs 10 --warmup 2 --json "$OUT/hf-eager-prefill2048.json" | tee "$OUT/hf-eager-prefill2048.txt"
