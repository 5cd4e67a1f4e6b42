#!/usr/bin/env bash
# MeteoRA's grouped one-token decode (q/k/v and gate/up each in one decode GEMV and one expand launch;
# METEORA_GROUPED_DECODE) on one GPU, the published CLI carried:   bash bench/probe/grouped-decode.sh
# 1. greedy tokens of the fixture's MeteoRA, 32 per prompt, grouped on and off (the same kernels per projection, so the
#    same bits are expected); 2. MeteoRA top-2 decode at batch 1 (LLaMA-3-8B shapes, 28 adapters r 8), grouped off and on.
# Writes straight into $OUT (a short call: whatever finished comes back). `bench model` prints how many groups ran
# ("grouped calls"), so tokens that agree cannot hide a path that never ran.
set -uo pipefail
source bench/device-unpack.sh
for p in 0 1 2; do
  ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$F/reference.json'))['prompts'][$p]['ids'])))")
  for f in off on; do
    METEORA_GROUPED_DECODE=$f $M generate --device cuda --dtype bfloat16 --model $F/base --meteora $F/meteora --ids "$ids" \
      --max-new-tokens 32 --json > /tmp/gen-$f$p.json 2>> "$OUT/grouped-generate.log"
  done
  cmp -s /tmp/gen-off$p.json /tmp/gen-on$p.json && [ -s /tmp/gen-on$p.json ] && echo "prompt $p: the same 32 tokens grouped and not" \
    || { echo "prompt $p: DIFFER"; cat /tmp/gen-off$p.json /tmp/gen-on$p.json; }
done | tee "$OUT/grouped-parity.txt"
for f in off on; do
  METEORA_GROUPED_DECODE=$f timeout 150 $M bench model --device cuda --dtype bfloat16 --config llama3-8b --variants base,top2 --strategies auto \
    --prefill "" --decode 1 --prompt-len 512 --new-tokens 64 --runs 3 --warmup 2 2>&1 | grep -E "decode|grouped" | sed "s/^/grouped $f: /" | tee -a "$OUT/grouped-model.txt"
done
