#!/usr/bin/env bash
# Nsight Compute on the decode projections of an 8B-shaped base at batch 1 (eager decode, so each kernel is profiled
# alone): the decode GEMV kernel (METEORA_DECODE_GEMV=on) against cuBLAS's kernels (off). Per kernel: time, DRAM
# throughput (% of peak), registers, achieved occupancy, and the warp stall breakdown. Results: gemv-ncu.tar.gz.
set -uo pipefail
source bench/device-unpack.sh
FINAL="$OUT"; OUT=$(mktemp -d)
trap 'tar czf "$FINAL/gemv-ncu.tar.gz" -C "$OUT" .' EXIT
METRICS=gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active,launch__grid_size,launch__block_size,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_lg_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_wait_per_issue_active.ratio,smsp__inst_executed.sum
for f in on off; do
  # on: the GEMV kernel only runs at decode; off: cuBLAS's kernels, skipping the 64-token prefill's 161 GEMMs.
  if [ $f = on ]; then FILTER=(--kernel-name meteora_gemv_bf16 --launch-count 10); else FILTER=(--kernel-name "regex:gemm|gemv|nvjet|cutlass|xmma" --launch-skip 200 --launch-count 20); fi
  METEORA_DECODE_GEMV=$f timeout 250 ncu --csv --metrics $METRICS "${FILTER[@]}" \
    $M bench model --device cuda --dtype bfloat16 --config llama3-8b --variants base --prefill "" --decode 1 --decode-mode eager \
    --prompt-len 64 --new-tokens 3 --runs 1 --warmup 1 > "$OUT/ncu-$f.csv" 2> "$OUT/ncu-$f.log"
  echo "== gemv $f"; python3 - "$OUT/ncu-$f.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]; rows = rows[1:]
ki, mi, vi = head.index("Kernel Name"), head.index("Metric Name"), head.index("Metric Value")
ii = head.index("ID")
by = collections.OrderedDict()
for r in rows: by.setdefault((r[ii], r[ki][:60]), {})[r[mi]] = r[vi]
for (i, k), m in by.items():
    print(i, k, " | ".join(f"{n.split('__')[1][:28]}={v}" for n, v in m.items()))
PY
done
