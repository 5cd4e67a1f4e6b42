#!/usr/bin/env bash
# Device run for the demo's base model and `demo --from-scratch --device cuda` (one GPU, one call each):
#   PART=smoke  pretraining throughput of the demo base's shape for a few steps (bf16, float32 masters), then
#               `demo --quick --device cuda` end to end (every eval mode on CUDA);
#   PART=full   `demo --from-scratch --device cuda` timed as a user runs it; the built base, task adapters, LoRA-B
#               and the report come back as demo-models.tar.gz.part-* (≤ 15 MB each) and demo-report.tar.gz;
#   PART=pair   two recipes (settings files VARIANT_A, VARIANT_B) at once, for exploration (see below).
# Logs go to stdout and $OUT/*.log.
set -uo pipefail
source bench/device-unpack.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
case "${PART:-smoke}" in
  smoke)
    for shape in "8 256 704 8 4" "${EXTRA_SHAPE:-}"; do
      [ -z "$shape" ] && continue
      set -- $shape
      echo "== make-base $* (seq 2048, batch 32, 40 steps)"
      $M make-base --device cuda --out /tmp/base-$1-$2 --layers $1 --hidden-size $2 --intermediate-size $3 --heads $4 --kv-heads $5 \
        --steps ${STEPS:-40} --batch-size 32 --max-seq-len 2048 --lr 2e-3 --eval-limit 8 --shard-size-mb 10 2>&1 | tee -a "$OUT/smoke-base.log" | tail -8
      ls -la /tmp/base-$1-$2
    done
    echo "== demo --quick --device cuda"
    /usr/bin/time -f "demo --quick: %e s" $M demo --quick --device cuda --dir /tmp/demo-quick > "$OUT/smoke-demo.log" 2>&1
    tail -30 "$OUT/smoke-demo.log"
    ;;
  full)
    # A warm machine keeps the previous call's /tmp/demo, and the demo would reuse its base and task data (a rebuild
    # from scratch is what this part times): start empty.
    rm -rf /tmp/demo
    /usr/bin/time -f "demo --from-scratch --device cuda: %e s wall" timeout ${LIMIT:-570} $M demo --from-scratch --device cuda --dir /tmp/demo ${SETTINGS:+--settings $SETTINGS} > "$OUT/demo.log" 2>&1
    tail -45 "$OUT/demo.log"
    (cd /tmp/demo && tar czf "$OUT/demo-report.tar.gz" report base/README.md base/probes.json base/metrics.jsonl base/loss_curve.png meteora/metrics.jsonl 2>/dev/null)
    (cd /tmp/demo && tar czf - base adapters lora-b | split -b 15000000 - "$OUT/demo-models.tar.gz.part-")
    ls -la "$OUT"
    ;;
  pair)
    # Two recipes side by side on the one GPU (exploration: each slows the other, so their times are not the
    # demo's); the first one's models come back. VARIANT_A / VARIANT_B: settings files (empty: the defaults).
    rm -rf /tmp/demo-a /tmp/demo-b
    for v in a b; do
      f=$([ $v = a ] && echo "${VARIANT_A:-}" || echo "${VARIANT_B:-}")
      timeout ${LIMIT:-570} $M demo --from-scratch --device cuda --dir /tmp/demo-$v ${f:+--settings $f} > "$OUT/demo-$v.log" 2>&1 &
    done
    wait
    for v in a b; do echo "== $v"; tail -25 "$OUT/demo-$v.log"; done
    (cd /tmp && tar czf "$OUT/demo-reports.tar.gz" demo-a/report demo-b/report demo-a/base/README.md demo-b/base/README.md \
       demo-a/base/probes.json demo-b/base/probes.json demo-a/base/metrics.jsonl demo-b/base/metrics.jsonl demo-a/base/loss_curve.png demo-b/base/loss_curve.png 2>/dev/null)
    (cd /tmp/demo-a && tar czf - base adapters lora-b 2>/dev/null | split -b 15000000 - "$OUT/demo-a-models.tar.gz.part-")
    ls -la "$OUT"
    ;;
esac
