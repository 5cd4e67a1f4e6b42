#!/usr/bin/env bash
# Where MeteoRA's prefill time goes against the base's, on one GPU with the published CLI carried:
#   bash bench/probe/prefill-phases.sh
# 1. `bench phases` of the base and MeteoRA top-2 (28 adapters r 8, LLaMA-3-8B shapes) at prefill 1 × 512 and 8 × 512
#    (and the base's decode b1, to set beside top-2's);
# 2. MeteoRA top-2 prefill with the fused [W; A; G] GEMM split into base and adapter GEMMs at every size
#    (METEORA_SPLIT_GEMM_MIN_TOKENS=1) and never (a huge threshold), against the default;
# 3. Nsight Compute's kernel durations for a window of one top-2 prefill 1 × 512 (LAUNCH_SKIP, LAUNCH_COUNT).
# Writes prefill-phases-*.txt, prefill-split.txt and prefill-ncu.csv into $OUT.
set -uo pipefail
source bench/device-unpack.sh
for v in base top2; do
  d=""; [ $v = base ] && d=1
  timeout 120 $M bench phases --device cuda --dtype bfloat16 --config llama3-8b --variant $v --prefill 1x512,8x512 --decode "$d" \
    --prompt-len 512 --runs 10 --warmup 3 > "$OUT/prefill-phases-$v.txt" 2>&1
done
for s in default 1 1000000; do
  e=""; [ $s != default ] && e="METEORA_SPLIT_GEMM_MIN_TOKENS=$s"
  env $e timeout 120 $M bench model --device cuda --dtype bfloat16 --config llama3-8b --variants base,top2 --strategies auto \
    --prefill 1x512,8x512 --decode "" --prompt-len 512 --runs 5 --warmup 2 2>&1 | grep -E "prefill" | sed "s/^/split=$s: /"
done | tee "$OUT/prefill-split.txt"
timeout 240 ncu --csv --metrics gpu__time_duration.sum --launch-skip ${LAUNCH_SKIP:-3000} --launch-count ${LAUNCH_COUNT:-300} \
  $M bench model --device cuda --dtype bfloat16 --config llama3-8b --variants top2 --strategies auto \
  --prefill 1x512 --decode "" --prompt-len 512 --runs 1 --warmup 1 > "$OUT/prefill-ncu.csv" 2> "$OUT/prefill-ncu.log"
tail -3 "$OUT/prefill-ncu.log"
