#!/usr/bin/env bash
# Device probe (issue #17): one environment switch off and on for graphed gate training (LLaMA-3-8B shapes, 28 adapters
# r 8, bf16, 512-token rows), throughput and the per-step losses side by side.
# Usage: bash bench/probe/train-gate-switch.sh METEORA_GROUPED_TRAINING_LOGITS   (results in $OUT)
set -euo pipefail
VAR=${1:?name of the switch}
source bench/device-unpack.sh
for b in ${BATCHES:-4 1}; do
  for v in off on; do
    env "$VAR=$v" $M bench train-gate --device cuda --dtype bfloat16 --config llama3-8b --adapters 28 --rank 8 --seq-len 512 \
      --batch-size $b --steps ${STEPS:-20} --warmup 5 --json "$OUT/b$b-$v.json" > "$OUT/b$b-$v.txt" 2>&1
  done
  python3 - "$OUT/b$b-off.json" "$OUT/b$b-on.json" "$VAR" <<'PY' | tee -a "$OUT/switch.txt"
import json, sys
off, on = (json.load(open(p)) for p in sys.argv[1:3])
worst = max(abs(a - b) / max(abs(a), 1e-9) for a, b in zip(off["losses"], on["losses"]))
print(f"{sys.argv[3]} batch {off['batch']}: off {off['tokens_per_s']:.0f} tok/s ({off['seconds_per_step']*1e3:.1f} ms), "
      f"on {on['tokens_per_s']:.0f} tok/s ({on['seconds_per_step']*1e3:.1f} ms); losses within {worst:.3g}")
PY
done
