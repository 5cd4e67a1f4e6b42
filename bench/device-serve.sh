#!/usr/bin/env bash
# Serving benchmark on one GPU (docs/BENCHMARKS.md "Serving"): LLaMA-3-8B shapes, random bf16 weights, 28 adapters
# r = 8, top-2; 1/8/32/64 concurrent streams of 512-token prompts and 128 new tokens over the HTTP API, with
# bench model's prefill and decode of the same model in the same run. Run through the device tool with the
# published CLI carried (scripts/publish-device.sh): LEVELS=1,8,32,64 bash bench/device-serve.sh
set -uo pipefail
source bench/device-unpack.sh
nvidia-smi --query-gpu=name --format=csv,noheader
export PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync
timeout "${LIMIT:-400}" $M bench serve --device cuda --dtype bfloat16 --config llama3-8b --adapters 28 --rank 8 --top-k 2 \
  --concurrency "${LEVELS:-1,8,32,64}" --prompt-len 512 --new-tokens 128 --json "$OUT/serve.json" > "$OUT/serve.txt" 2> "$OUT/serve.log"
echo "exit $?"
cat "$OUT/serve.log" "$OUT/serve.txt"
