#!/usr/bin/env bash
# Serving benchmark on one GPU (docs/BENCHMARKS.md "Serving"): LLaMA-3-8B shapes, random bf16 weights, 28 adapters
# r = 8, top-2; 1/8/32/64 concurrent streams of 512-token prompts and 128 new tokens over the HTTP API, with
# bench model's prefill and decode of the same model in the same run. Run through the device tool with the
# published CLI carried (scripts/publish-device.sh):
#   LEVELS=1,8,32,64 MODES="eager graphs+kernel" bash bench/device-serve.sh
# MODES: eager (ATen per-row routing, eager steps), kernel (the per-row routing kernel), graphs (CUDA-graph decode),
# graphs+kernel. Before the per-row kernel is trusted, `bench layer` shows its error against loop (rows-kernel).
set -uo pipefail
source bench/device-unpack.sh
nvidia-smi --query-gpu=name --format=csv,noheader
export PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync
timeout 120 $M bench layer --device cuda --dtype bfloat16 --shapes 4096x4096,4096x14336 --adapters 28 --ranks 8 --top-k 1,2 --tokens 1,32,64 \
  --runs 20 --warmup 5 > "$OUT/layer-rows.txt" 2> "$OUT/layer-rows.log"; cat "$OUT/layer-rows.txt"
for mode in ${MODES:-eager graphs+kernel}; do
  extra=""; export METEORA_ROW_ROUTING_KERNEL=off
  case "$mode" in *graphs*) extra="--cuda-graphs";; esac
  case "$mode" in *kernel*) export METEORA_ROW_ROUTING_KERNEL=on;; esac
  timeout "${LIMIT:-400}" $M bench serve --device cuda --dtype bfloat16 --config llama3-8b --adapters 28 --rank 8 --top-k 2 $extra \
    --concurrency "${LEVELS:-1,8,32,64}" --prompt-len 512 --new-tokens 128 --json "$OUT/serve-$mode.json" > "$OUT/serve-$mode.txt" 2> "$OUT/serve-$mode.log"
  echo "== $mode: exit $?"; cat "$OUT/serve-$mode.log" "$OUT/serve-$mode.txt"
done
