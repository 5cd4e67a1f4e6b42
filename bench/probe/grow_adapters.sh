#!/usr/bin/env bash
# add-adapter / remove-adapter on the demo's shipped base and task adapters (issue "Grow a MeteoRA model"; results in
# docs/RESULTS.md). For each held-out task T (HELD, default all twelve): train the gates on the other eleven exactly as
# the demo does (top-1 training, 500 steps × 16, lr 5e-2), then `add-adapter` T (ADD_STEPS steps, old rows frozen,
# replay 1:1, --balance: recipe a of docs/RESULTS.md), and evaluate the eleven-task gates on their eleven tasks and the grown gates on all twelve; also the
# twelve-task gates trained from the start (the reference and the timing baseline), PEFT-oracle per task, and
# remove-adapter of T from the twelve-task gates
# (evaluated on the other eleven). Writes OUT/rows.jsonl (one line per run) and OUT/*.log.
#   bash bench/probe/grow_adapters.sh [OUT]      (CPU: ~4 min per held-out task on two cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-/tmp/grow}; mkdir -p "$OUT"
M=./meteora; BASE=models/meteora-demo/base; ADAPTERS=models/meteora-demo/adapters
ADD_STEPS=${ADD_STEPS:-100}
# GATE: the gate recipe (default the 2026-12-01 demo's; the 2026-12-02 demo's: RECIPE=restate, response-only LM loss as
# the demo's GateTrainer default — train-gate's CLI default is prompt + response). ADD_LEN: add-adapter's --max-seq-len.
if [ "${RECIPE:-}" = restate ]; then
  GATE=${GATE:-"--top-k 1 --steps 220 --batch-size 16 --lr 5e-2 --weight-decay 0.01 --clip 0.3 --max-seq-len 256 --balance --eval-limit 128 --restate 0.5 --length-buckets --response-only"}
  ADD_EXTRA=${ADD_EXTRA---balance --restate 0.5 --length-buckets --response-only}; ADD_LEN=${ADD_LEN:-256}
fi
ADD_EXTRA=${ADD_EXTRA---balance}   # every task equally often (recipe a); ADD_EXTRA= for recipe b (half of each batch the new task)
TAG=${TAG:-}                  # a second add-adapter recipe over the same eleven-task gates: TAG=b ADD_EXTRA=… writes grown<TAG>-T
TASKS=$(ls "$ADAPTERS"); HELD=${HELD:-$TASKS}
GATE=${GATE:-"--top-k 1 --steps 500 --batch-size 16 --lr 5e-2 --weight-decay 0.01 --clip 0.3 --max-seq-len 128 --balance --eval-limit 128"}
ADD_LEN=${ADD_LEN:-128}
EVAL="--limit 50 --batch-size 25 --max-new-tokens 16"
[ -d "$OUT/tasks" ] || $M make-tasks --out "$OUT/tasks" --train 500 --test 50 --seed 0 > /dev/null
now() { date +%s.%N; }
scores() { python3 -c "import json,sys;d=json.load(open(sys.argv[1]));print(json.dumps({t['task']:t['accuracy'] for t in d['tasks']}))" "$1/results.json"; }
row() { echo "$1" >> "$OUT/rows.jsonl"; }

if [ ! -f "$OUT/peft/results.json" ]; then
  $M eval --model $BASE --mode peft --adapters-dir $ADAPTERS --data "$OUT/tasks" --out "$OUT/peft" $EVAL > "$OUT/peft.log" 2>&1
  row "{\"run\": \"peft\", \"scores\": $(scores "$OUT/peft")}"
fi
if [ ! -f "$OUT/all12/meteora_config.json" ]; then
  t0=$(now); $M train-gate --model $BASE --adapters-dir $ADAPTERS --data "$OUT/tasks" --out "$OUT/all12" $GATE > "$OUT/all12.log" 2>&1; t1=$(now)
  $M eval --model $BASE --mode meteora --meteora "$OUT/all12" --data "$OUT/tasks" --out "$OUT/all12-eval" $EVAL > "$OUT/all12-eval.log" 2>&1
  row "{\"run\": \"all12\", \"seconds\": $(echo "$t1 - $t0" | bc), \"scores\": $(scores "$OUT/all12-eval")}"
fi
for T in $HELD; do
  [ -f "$OUT/grown$TAG-$T-eval/results.json" ] && continue
  if [ -n "$TAG" ] && [ -f "$OUT/gates11-$T/meteora_config.json" ]; then   # reuse the eleven-task gates
    t1=$(now); $M add-adapter --model $BASE --meteora "$OUT/gates11-$T" --adapter "$ADAPTERS/$T" --data "$OUT/tasks" --out "$OUT/grown$TAG-$T" \
      --steps $ADD_STEPS --batch-size 16 --lr 5e-2 --weight-decay 0.01 --clip 0.3 --max-seq-len $ADD_LEN --eval-limit 128 $ADD_EXTRA > "$OUT/grown$TAG-$T.log" 2>&1; t2=$(now)
    $M eval --model $BASE --mode meteora --meteora "$OUT/grown$TAG-$T" --data "$OUT/tasks" --out "$OUT/grown$TAG-$T-eval" $EVAL > "$OUT/grown$TAG-$T-eval.log" 2>&1
    row "{\"run\": \"held$TAG\", \"task\": \"$T\", \"add_seconds\": $(echo "$t2 - $t1" | bc), \"grown\": $(scores "$OUT/grown$TAG-$T-eval")}"
    continue
  fi
  rm -rf "$OUT/sub-$T" "$OUT/gates11-$T" "$OUT/grown-$T" "$OUT/removed-$T"; mkdir -p "$OUT/sub-$T/adapters" "$OUT/sub-$T/tasks"
  for U in $TASKS; do
    [ "$U" = "$T" ] && continue
    ln -s "$(realpath $ADAPTERS/$U)" "$OUT/sub-$T/adapters/$U"; ln -s "$(realpath $OUT/tasks/$U)" "$OUT/sub-$T/tasks/$U"
  done
  t0=$(now); $M train-gate --model $BASE --adapters-dir "$OUT/sub-$T/adapters" --data "$OUT/sub-$T/tasks" --out "$OUT/gates11-$T" $GATE > "$OUT/gates11-$T.log" 2>&1; t1=$(now)
  $M add-adapter --model $BASE --meteora "$OUT/gates11-$T" --adapter "$ADAPTERS/$T" --data "$OUT/tasks" --out "$OUT/grown-$T" \
    --steps $ADD_STEPS --batch-size 16 --lr 5e-2 --weight-decay 0.01 --clip 0.3 --max-seq-len $ADD_LEN --eval-limit 128 $ADD_EXTRA > "$OUT/grown-$T.log" 2>&1; t2=$(now)
  $M eval --model $BASE --mode meteora --meteora "$OUT/gates11-$T" --data "$OUT/sub-$T/tasks" --out "$OUT/gates11-$T-eval" $EVAL > "$OUT/gates11-$T-eval.log" 2>&1
  $M eval --model $BASE --mode meteora --meteora "$OUT/grown-$T" --data "$OUT/tasks" --out "$OUT/grown-$T-eval" $EVAL > "$OUT/grown-$T-eval.log" 2>&1
  $M remove-adapter --meteora "$OUT/all12" --name "$T" --out "$OUT/removed-$T" > "$OUT/removed-$T.log" 2>&1
  $M eval --model $BASE --mode meteora --meteora "$OUT/removed-$T" --data "$OUT/sub-$T/tasks" --out "$OUT/removed-$T-eval" $EVAL > "$OUT/removed-$T-eval.log" 2>&1
  row "{\"run\": \"held\", \"task\": \"$T\", \"train11_seconds\": $(echo "$t1 - $t0" | bc), \"add_seconds\": $(echo "$t2 - $t1" | bc), \"gates11\": $(scores "$OUT/gates11-$T-eval"), \"grown\": $(scores "$OUT/grown-$T-eval"), \"removed\": $(scores "$OUT/removed-$T-eval")}"
done
echo "rows in $OUT/rows.jsonl"
