#!/usr/bin/env bash
# Serving benchmark on one GPU (docs/BENCHMARKS.md "Serving"): LLaMA-3-8B shapes, random bf16 weights, 28 adapters
# r = 8, top-2; 1/8/32/64 concurrent streams of 512-token prompts and 128 new tokens over the HTTP API, with
# bench model's prefill and decode of the same model in the same run. Run through the device tool with the
# published CLI carried (scripts/publish-device.sh):
#   LEVELS=1,8,32,64 MODES="eager graphs+kernel" bash bench/device-serve.sh
# PART=check instead compares the serving modes' greedy completions on the fixture (token for token).
# MODES: eager (ATen per-row routing, eager steps), kernel (the per-row routing kernel), graphs (CUDA-graph decode),
# graphs+kernel. Before the per-row kernel is trusted, `bench layer` shows its error against loop (rows-kernel).
set -uo pipefail
source bench/device-unpack.sh
nvidia-smi --query-gpu=name --format=csv,noheader
export PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync
if [ "${PART:-bench}" = check ]; then
  # Serving modes agree token for token: the fixture served eagerly with ATen per-row routing ("eager"), then with
  # CUDA-graph decode steps and the per-row routing kernel ("graphs"; float32 has no kernel, so graphs alone), the
  # same greedy requests 8 at a time (bench/probe/serve_outputs.py); the differing completions are listed. Every
  # step is time-limited and logs straight to $OUT (a hung server is killed, not waited for). SIGTERM, not SIGINT:
  # a background job of a non-interactive shell starts with SIGINT ignored.
  port=18000
  for dt in ${DTYPES:-bfloat16 float32}; do
    for mode in eager graphs; do
      port=$((port + 1)); log="$OUT/check-$dt-$mode.log"
      if [ $mode = graphs ]; then extra="--cuda-graphs true"; export METEORA_ROW_ROUTING_KERNEL=on
      else extra="--cuda-graphs false"; export METEORA_ROW_ROUTING_KERNEL=off; fi
      $M serve --device cuda --dtype $dt --model $F/base --meteora $F/meteora --port $port --max-batch 16 $extra > "$log" 2>&1 &
      pid=$!
      for i in $(seq 90); do curl -sf "http://127.0.0.1:$port/ready" > /dev/null && break; sleep 1; done
      echo "== $dt $mode: ready after ${i} s" | tee -a "$OUT/check.txt"
      timeout 90 python3 -u bench/probe/serve_outputs.py "http://127.0.0.1:$port" "/tmp/check-$dt-$mode.json" --concurrency 8 2>&1 | tee -a "$OUT/check.txt"
      kill -TERM $pid; for i in $(seq 15); do kill -0 $pid 2>/dev/null || break; sleep 1; done
      kill -0 $pid 2>/dev/null && { echo "== $dt $mode: did not stop within 15 s of SIGTERM; killed" | tee -a "$OUT/check.txt"; kill -9 $pid; }
      tail -5 "$log"
    done
    python3 - "$dt" <<'PY' 2>&1 | tee -a "$OUT/check.txt"
import json, sys
dt = sys.argv[1]
a, b = (json.load(open(f"/tmp/check-{dt}-{m}.json")) for m in ("eager", "graphs"))
diff = [k for k in a if a[k] != b.get(k)]
print(f"{dt}: {len(a) - len(diff)} of {len(a)} completions equal between eager and graphs")
for k in diff: print(f"  {k}: eager {a[k]!r} | graphs {b[k]!r}")
PY
  done
  exit 0
fi
timeout 120 $M bench layer --device cuda --dtype bfloat16 --shapes 4096x4096,4096x14336 --adapters 28 --ranks 8 --top-k 1,2 --tokens 1,32,64 \
  --runs 20 --warmup 5 > "$OUT/layer-rows.txt" 2> "$OUT/layer-rows.log"; cat "$OUT/layer-rows.txt"
for mode in ${MODES:-eager graphs+kernel}; do
  extra="--cuda-graphs false"; export METEORA_ROW_ROUTING_KERNEL=off
  case "$mode" in *graphs*) extra="--cuda-graphs true";; esac
  case "$mode" in *kernel*) export METEORA_ROW_ROUTING_KERNEL=on;; esac
  timeout "${LIMIT:-400}" $M bench serve --device cuda --dtype bfloat16 --config llama3-8b --adapters 28 --rank 8 --top-k 2 $extra \
    --concurrency "${LEVELS:-1,8,32,64}" --prompt-len 512 --new-tokens 128 --json "$OUT/serve-$mode.json" > "$OUT/serve-$mode.txt" 2> "$OUT/serve-$mode.log"
  echo "== $mode: exit $?"; cat "$OUT/serve-$mode.log" "$OUT/serve-$mode.txt"
done
