#!/usr/bin/env bash
# Issue #18 item 5: `generate --device cuda` with every mixing strategy. Loop and segment read routing data on the host,
# which a CUDA graph cannot capture, so generation must decode them eagerly (saying so once on stderr) instead of
# failing with "CUDA graph capture failed"; every strategy must give the same greedy tokens as dense, in float32 (the
# strategies differ only in summation order). One GPU, the published CLI carried (scripts/publish-device.sh):
#   bash bench/device-generate-strategies.sh
set -uo pipefail
source bench/device-unpack.sh
ids=0,270,27,100,5,77   # the fixture's vocabulary has 384 ids
bad=0
for s in dense gather loop segment auto; do
  out=$(timeout 120 $M generate --device cuda --dtype float32 --model $F/base --meteora $F/meteora --strategy $s \
    --ids $ids --max-new-tokens 24 --json 2> "$OUT/gen-$s.log"); rc=$?
  echo "$s (exit $rc): $out" | tee -a "$OUT/strategies.txt"
  [ $rc = 0 ] || bad=1
  [ "$s" = dense ] && ref=$out
  [ "$out" = "$ref" ] || { echo "DIFFERS from dense: $s" | tee -a "$OUT/strategies.txt"; bad=1; }
  case $s in loop|segment) grep -q "decoding without CUDA graphs" "$OUT/gen-$s.log" || { echo "no eager notice for $s" | tee -a "$OUT/strategies.txt"; bad=1; } ;; esac
done
[ $bad = 0 ] && echo "generate on CUDA: every strategy ran and gave dense's tokens" | tee -a "$OUT/strategies.txt"
exit $bad
