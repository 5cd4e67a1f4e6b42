#!/usr/bin/env bash
# Device run for the demo's base model and `demo --from-scratch --device cuda` (one GPU, one call each):
#   PART=smoke  pretraining throughput of the demo base's shape for a few steps (bf16, float32 masters), then
#               `demo --quick --device cuda` end to end (every eval mode on CUDA);
#   PART=full   `demo --from-scratch --device cuda` timed as a user runs it; the built base, task adapters, LoRA-B
#               and the report come back as demo-models.tar.gz.part-* (≤ 15 MB each) and demo-report.tar.gz;
#   PART=twin   two rebuilds of one recipe at once, the second on the first one's base (see below);
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
  twin)
    # Two rebuilds of one recipe in one call, for the run-to-run noise of everything after the base: A is
    # `demo --from-scratch` timed as usual (B shares the GPU from A's LoRA stage on, so A's later stages run slower
    # than alone); B starts once A's base is built, on a copy of it (the demo reuses a base whose stamp matches), and
    # trains its own task data, adapters, LoRA-B and gates. A's models come back as demo-models.tar.gz.part-*, B's
    # adapters and LoRA-B as demo-b-adapters.tar.gz, both reports and logs in demo-reports.tar.gz.
    # Measured 2026-12-02 (suite 3, one H200): the two LoRA stages sharing the GPU took 344 and 348 s (226 s alone),
    # so both runs were cut by LIMIT=545 inside LoRA-B; the base and both sets of task adapters came back. With
    # today's recipe use it for the task adapters' run-to-run noise, not for whole rebuilds.
    rm -rf /tmp/demo /tmp/demo-b
    t0=$(date +%s); limit=${LIMIT:-560}
    timeout $limit $M demo --from-scratch --device cuda --dir /tmp/demo ${SETTINGS:+--settings $SETTINGS} > "$OUT/demo.log" 2>&1 &
    a=$!
    ( while [ ! -f /tmp/demo/base/.demo-stamp ] && kill -0 $a 2>/dev/null; do sleep 2; done
      [ -f /tmp/demo/base/.demo-stamp ] || exit 1
      mkdir -p /tmp/demo-b && cp -r /tmp/demo/base /tmp/demo-b/base
      left=$(( limit - ($(date +%s) - t0) ))
      echo "B starts at $(( $(date +%s) - t0 )) s" > "$OUT/demo-b.log"
      [ $left -gt 30 ] || { echo "B not started: $left s left of $limit" >> "$OUT/demo-b.log"; exit 1; }   # timeout 0 would mean no limit
      timeout $left $M demo --from-scratch --device cuda --dir /tmp/demo-b ${SETTINGS:+--settings $SETTINGS} >> "$OUT/demo-b.log" 2>&1 ) &
    wait
    for v in demo demo-b; do echo "== $v"; tail -40 "$OUT/$v.log"; done
    (cd /tmp && tar czf "$OUT/demo-reports.tar.gz" demo/report demo-b/report demo/base/README.md demo/base/probes.json \
       demo/base/metrics.jsonl demo/base/loss_curve.png demo/meteora/metrics.jsonl demo-b/meteora/metrics.jsonl -C "$OUT" demo.log demo-b.log 2>/dev/null)
    (cd /tmp/demo && tar czf - base adapters lora-b | split -b 15000000 - "$OUT/demo-models.tar.gz.part-")
    (cd /tmp/demo-b && tar czf "$OUT/demo-b-adapters.tar.gz" adapters lora-b 2>/dev/null)
    rm -f "$OUT/demo.log" "$OUT/demo-b.log"
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
