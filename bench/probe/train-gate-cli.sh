#!/usr/bin/env bash
# Device probe (issue #17): the real `train-gate` CLI on the GPU with --cuda-graph off, on and auto: the fixture's base
# and three adapters, generated task data of varied lengths, 100 steps of 8 rows, an evaluation every 50 steps. Prints
# each run's wall time, what the loop said about the graph, its last logged step, and how far the graphed run's gates
# are from the step-by-step run's. Usage: bash bench/probe/train-gate-cli.sh   (results in $OUT)
set -euo pipefail
source bench/device-unpack.sh
python3 - /tmp/tasks <<'PY'
import json, os, random, sys
rng = random.Random(3)
def word(letters): return "".join(rng.choice(letters) for _ in range(rng.randint(3, 5)))
def make(task):
    n = rng.randint(2, 8)   # lengths vary, as real data does
    if task == "reverse":
        w = [word("abcdefghijklm") for _ in range(n)]
        return "reverse: " + ",".join(w) + " =>", " " + ",".join(x[::-1] for x in w)
    if task == "upper":
        w = [word("nopqrstuvwxyz") for _ in range(n)]
        return "upper: " + ";".join(w) + " =>", " " + ";".join(x.upper() for x in w)
    v = [rng.randint(1, 999) for _ in range(n)]
    return "add: " + " + ".join(map(str, v)) + " =>", " " + str(sum(v))
for task in ("add", "reverse", "upper"):
    os.makedirs(os.path.join(sys.argv[1], task), exist_ok=True)
    with open(os.path.join(sys.argv[1], task, "train.jsonl"), "w") as f:
        for _ in range(300):
            p, r = make(task)
            f.write(json.dumps({"prompt": p, "response": r}) + "\n")
PY
for mode in off on auto; do
  start=$(date +%s.%N)
  $M train-gate --device cuda --model $F/base --adapters-dir $F/adapters --data /tmp/tasks --out /tmp/g-$mode \
    --steps ${STEPS:-100} --batch-size 8 --eval-every 50 --cuda-graph $mode > "$OUT/cli-$mode.txt" 2>&1
  end=$(date +%s.%N)
  echo "$mode: $(python3 -c "print(f'{$end - $start:.1f}')") s wall; $(grep -h 'CUDA graph' "$OUT/cli-$mode.txt" | tr '\n' ' ')"
  python3 -c "import json;l=[json.loads(x) for x in open('/tmp/g-$mode/metrics.jsonl')];t=[x for x in l if x.get('kind')=='train'][-1];e=[x for x in l if x.get('kind')=='eval'][-1];print('  last step', {k: round(v, 4) for k, v in t.items() if isinstance(v, float)}, 'eval', {k: round(v, 4) for k, v in e.items() if isinstance(v, float)})"
done | tee "$OUT/cli-summary.txt"
python3 - <<'PY' | tee -a "$OUT/cli-summary.txt"
from safetensors.torch import load_file
a, b = load_file("/tmp/g-off/gates.safetensors"), load_file("/tmp/g-on/gates.safetensors")
worst = max(((a[k].float() - b[k].float()).norm() / a[k].float().norm()).item() for k in a)
print(f"gates, graphed vs step by step: {len(a)} tensors, largest relative difference {worst:.3g}")
PY
