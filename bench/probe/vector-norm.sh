#!/usr/bin/env bash
# The vector RMSNorm kernel (src/Meteora/Llama/FusedKernels.cs meteora_rmsnorm8_bf16; METEORA_VECTOR_NORM) on one GPU,
# the published CLI carried:   bash bench/probe/vector-norm.sh
# 1. greedy tokens (32 per prompt, bfloat16) of the fixture's base and MeteoRA with the vector norm off and on;
# 2. decode b1 of base and MeteoRA top-2 at LLaMA-3-8B shapes, off and on, and the base's phases with it on.
set -uo pipefail
source bench/device-unpack.sh
for p in 0 1 2; do
  ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$F/reference.json'))['prompts'][$p]['ids'])))")
  for m in base meteora; do
    extra=""; [ $m = meteora ] && extra="--meteora $F/meteora"
    for f in off on; do
      METEORA_VECTOR_NORM=$f $M generate --device cuda --dtype bfloat16 --model $F/base $extra --ids "$ids" --max-new-tokens 32 --json > /tmp/vn-$m-$f$p.json 2>> "$OUT/vector-norm-generate.log"
    done
    cmp -s /tmp/vn-$m-off$p.json /tmp/vn-$m-on$p.json && [ -s /tmp/vn-$m-on$p.json ] && echo "$m prompt $p: the same 32 tokens off and on" \
      || { echo "$m prompt $p: DIFFER"; cat /tmp/vn-$m-off$p.json /tmp/vn-$m-on$p.json; }
  done
done | tee "$OUT/vector-norm-parity.txt"
for f in off on; do
  METEORA_VECTOR_NORM=$f timeout 120 $M bench model --device cuda --dtype bfloat16 --config llama3-8b --variants base,top2 --strategies auto \
    --prefill "" --decode 1,8 --prompt-len 512 --new-tokens 64 --runs 3 --warmup 2 2>&1 | grep -E "decode" | sed "s/^/vector norm $f: /" | tee -a "$OUT/vector-norm-model.txt"
done
timeout 60 $M bench phases --device cuda --dtype bfloat16 --config llama3-8b --variant base --prefill "" --decode 1 --prompt-len 512 --runs 20 --warmup 3 > "$OUT/phases-base.txt" 2>&1
tail -20 "$OUT/phases-base.txt"
