#!/usr/bin/env bash
# Device run for CUDA-graph decoding and the fused routing kernel (one call, one GPU):
#  1. correctness through the CLI: generate on the fixture with and without CUDA graphs (float32 and bfloat16,
#     base and MeteoRA top-2), and with the routing kernel on and off: the token lists must be equal;
#  2. the layer benchmark at L = 28, r = 8, k = 2 (dense with the kernel, dense with ATen routing, the other
#     strategies; memory from the cudaMallocAsync pool) and the PyTorch eager reference of the paper's formulations;
#  3. the model benchmark (native caching allocator): eager vs CUDA-graph decode for base and MeteoRA top-1/top-2,
#     MeteoRA top-2 again with the kernel off, and transformers eager for the base.
#  4. (PART=2) peak memory with the cudaMallocAsync pool, one LoRA adapter included, and transformers eager decode.
# PART=1 runs 1–3, PART=2 runs 4 (each fits one device call), PART=check only 1. QUICK=1 shortens the model benchmark.
# At most 8 files come back: logs go to stdout.
set -uo pipefail
source bench/device-unpack.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
[[ "${PART:-1}" = 1 || "${PART:-1}" = check ]] && {
  IDS=0,270,27,366,260,222
  for dt in float32 bfloat16; do
    for variant in "" "--meteora $F/meteora --top-k 2"; do
      a=$($M generate --device cuda --dtype $dt --model $F/base $variant --ids $IDS --max-new-tokens 24 --json 2>&1 | tail -1)
      b=$($M generate --device cuda --dtype $dt --model $F/base $variant --ids $IDS --max-new-tokens 24 --json --no-cuda-graph 2>&1 | tail -1)
      c=$(METEORA_ROUTING_KERNEL=off $M generate --device cuda --dtype $dt --model $F/base $variant --ids $IDS --max-new-tokens 24 --json 2>&1 | tail -1)
      echo "$dt ${variant:+meteora} graph+kernel: $a"
      echo "$dt ${variant:+meteora} eager+kernel: $b"
      echo "$dt ${variant:+meteora} graph+aten:   $c"
      [ "$a" = "$b" ] && echo "  graph == eager: yes" || echo "  graph == eager: NO"
      [ "$a" = "$c" ] && echo "  kernel == aten: yes" || echo "  kernel == aten: NO"
    done
  done
} > "$OUT/check.txt" 2>&1
[ -f "$OUT/check.txt" ] && cat "$OUT/check.txt"
if [ "${PART:-1}" = 1 ]; then
PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync timeout 300 $M bench layer --device cuda --dtype bfloat16 --adapters 28 --ranks 8 --top-k 2 \
  --runs 10 --warmup 3 --json "$OUT/layer-ours.json" > "$OUT/layer-ours.txt" 2> /tmp/layer-ours.log
head -3 /tmp/layer-ours.log; cat "$OUT/layer-ours.txt"
[ "${QUICK:-0}" = 1 ] || timeout 200 python3 bench/reference/meteora_layer_bench.py --adapters 28 --ranks 8 --top-k 2 --runs 10 --warmup 3 > "$OUT/layer-torch.txt" 2>&1
[ -f "$OUT/layer-torch.txt" ] && tail -20 "$OUT/layer-torch.txt"
if [ "${QUICK:-0}" = 1 ]; then
  MODEL="--prefill 1x2048 --decode 1,32 --new-tokens 32 --runs 5 --warmup 4"
else
  MODEL="--prefill 1x2048,8x512 --decode 1,8,32 --new-tokens 128 --runs 10 --warmup 16"
fi
timeout 420 $M bench model --device cuda --dtype bfloat16 --config llama3-8b --prompt-len 512 $MODEL --variants base,lora,top1,top2 \
  --strategies auto --decode-mode eager,graph --json "$OUT/model-ours.json" > "$OUT/model-ours.txt" 2> /tmp/model-ours.log
head -2 /tmp/model-ours.log; tail -2 /tmp/model-ours.log; cat "$OUT/model-ours.txt"
METEORA_ROUTING_KERNEL=off timeout 200 $M bench model --device cuda --dtype bfloat16 --config llama3-8b --prompt-len 512 $MODEL --variants top2 \
  --strategies auto --decode-mode graph > "$OUT/model-aten.txt" 2> /tmp/model-aten.log
head -2 /tmp/model-aten.log; cat "$OUT/model-aten.txt"
fi
if [ "${PART:-2}" = 2 ]; then
# Peak memory (cudaMallocAsync pool; slower decode, so throughput comes from part 1), then transformers eager.
PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync timeout 300 $M bench model --device cuda --dtype bfloat16 --config llama3-8b --prompt-len 512 \
  --prefill 1x2048,8x512 --decode 1,32 --new-tokens 32 --runs 5 --warmup 8 --variants base,lora,top1,top2 --strategies auto \
  --decode-mode eager,graph --json "$OUT/model-pool.json" > "$OUT/model-pool.txt" 2> /tmp/model-pool.log
head -2 /tmp/model-pool.log; tail -3 /tmp/model-pool.log; cat "$OUT/model-pool.txt"
[ "${QUICK:-0}" = 1 ] || timeout 240 python3 bench/reference/hf_llama_bench.py --attn eager --batch 1 8 32 --prompt-len 512 --new-tokens 128 --runs 5 --warmup 2 > "$OUT/hf-eager.txt" 2>&1
[ -f "$OUT/hf-eager.txt" ] && tail -8 "$OUT/hf-eager.txt"
fi
