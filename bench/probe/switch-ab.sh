#!/usr/bin/env bash
# A kernel switch, off against on, on one GPU with the published CLI carried:   bash bench/probe/switch-ab.sh VAR
# (e.g. METEORA_GATE_LOGITS_KERNEL, METEORA_VECTOR_NORM, METEORA_GROUPED_DECODE; VAR=off / VAR=on).
# 1. greedy tokens (32 per prompt, bfloat16) of the fixture's base and MeteoRA, VAR off and on;
# 2. decode b1 and b8 of the base and MeteoRA top-2 at LLaMA-3-8B shapes (28 adapters r 8), off and on (and prefill
#    at the shapes in PREFILL, e.g. PREFILL=1x512,8x512 for a kernel that matters there; default none);
# 3. `bench phases` of MeteoRA top-2 at b1 with VAR on.
# Writes straight into $OUT: VAR-parity.txt, VAR-model.txt, VAR-phases-top2.txt (so several switches fit one call).
set -uo pipefail
VAR=${1:?usage: switch-ab.sh VAR}
source bench/device-unpack.sh
for p in 0 1 2; do
  ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$F/reference.json'))['prompts'][$p]['ids'])))")
  for m in base meteora; do
    extra=""; [ $m = meteora ] && extra="--meteora $F/meteora"
    for f in off on; do
      env $VAR=$f $M generate --device cuda --dtype bfloat16 --model $F/base $extra --ids "$ids" --max-new-tokens 32 --json > /tmp/ab-$m-$f$p.json 2>> "$OUT/$VAR-generate.log"
    done
    cmp -s /tmp/ab-$m-off$p.json /tmp/ab-$m-on$p.json && [ -s /tmp/ab-$m-on$p.json ] && echo "$VAR, $m prompt $p: the same 32 tokens off and on" \
      || { echo "$VAR, $m prompt $p: DIFFER"; cat /tmp/ab-$m-off$p.json /tmp/ab-$m-on$p.json; }
  done
done | tee "$OUT/$VAR-parity.txt"
for f in off on; do
  env $VAR=$f timeout 120 $M bench model --device cuda --dtype bfloat16 --config llama3-8b --variants base,top2 --strategies auto \
    --prefill "${PREFILL:-}" --decode 1,8 --prompt-len 512 --new-tokens 64 --runs 3 --warmup 2 2>&1 | grep -E "decode|prefill|GEMV" | sed "s/^/$VAR=$f: /" | tee -a "$OUT/$VAR-model.txt"
done
env $VAR=on timeout 60 $M bench phases --device cuda --dtype bfloat16 --config llama3-8b --variant top2 --prefill "" --decode 1 --prompt-len 512 --runs 20 --warmup 3 > "$OUT/$VAR-phases-top2.txt" 2>&1
tail -20 "$OUT/$VAR-phases-top2.txt"
