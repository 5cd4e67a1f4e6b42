#!/usr/bin/env bash
# Issue #16 on the GPU machines: data-parallel training over NCCL, launched by torchrun. Needs the published CLI
# carried (scripts/publish-device.sh). Results in $OUT/distributed.txt.
#   PART=one    (one GPU)  the NCCL binding as a group of one (bench all-reduce), torchrun with one rank, and
#               train-gate on the fixture through torchrun equal to a plain run;
#   PART=two    (nvidia-h200-x2) all-reduce/broadcast across 2 ranks; 2-GPU train-gate on the fixture equals 1-GPU
#               training of the same global batch (gates within 1e-5 after 10 steps, float32); resume 2 → 1 → 2;
#               a killed rank and a hung rank end the job with a clear error within the deadline;
#   PART=bench  (nvidia-h200-x2) bench train-gate (28 adapters r = 8) and bench train-lora (one r = 8 adapter) at
#               LLaMA-3-8B shapes, 512 tokens, bf16, on 1 and 2 GPUs in the same call (scaling efficiency = 2-GPU
#               tokens/s ÷ (2 × 1-GPU)).
set -uo pipefail
source bench/device-unpack.sh
export NCCL_NVLS_ENABLE=0
R="$OUT/distributed.txt"
say() { echo "$*" | tee -a "$R"; }
nvidia-smi --query-gpu=index,name --format=csv,noheader | tee -a "$R"
ngpu=$(nvidia-smi -L | wc -l)
TR="torchrun --standalone --no-python"

# Fixture task data: the fixture's adapters are add, reverse and upper.
D=/tmp/dp-data
python3 - <<'PY'
import json, os, random
rng = random.Random(3)
def word(letters): return "".join(rng.choice(letters) for _ in range(rng.randint(3, 5)))
for task in ["add", "reverse", "upper"]:
    os.makedirs(f"/tmp/dp-data/{task}", exist_ok=True)
    with open(f"/tmp/dp-data/{task}/train.jsonl", "w") as f:
        for _ in range(48):
            if task == "add":
                n = [rng.randint(1, 999) for _ in range(6)]; p, r = "add: " + " + ".join(map(str, n)) + " =>", " " + str(sum(n))
            elif task == "reverse":
                w = [word("abcdefghijklm") for _ in range(6)]; p, r = "reverse: " + ",".join(w) + " =>", " " + ",".join(x[::-1] for x in w)
            else:
                w = [word("nopqrstuvwxyz") for _ in range(6)]; p, r = "upper: " + ";".join(w) + " =>", " " + ";".join(x.upper() for x in w)
            f.write(json.dumps({"prompt": p, "response": r}) + "\n")
PY
GATE="train-gate --dtype float32 --model $F/base --adapters-dir $F/adapters --data $D --steps 10 --lr 1e-2 --seed 7 --balance --eval-fraction 0.1 --eval-limit 8"
compare() {  # two MeteoRA folders → max |difference| of their gates; exit 1 above the tolerance
  python3 - "$1" "$2" "${3:-1e-5}" <<'PY'
import json, struct, sys, torch
def load(path):
    raw = open(path + "/gates.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]; head = json.loads(raw[8:8 + n]); body = raw[8 + n:]
    return {k: torch.frombuffer(bytearray(body[v["data_offsets"][0]:v["data_offsets"][1]]), dtype=torch.float32).reshape(v["shape"])
            for k, v in head.items() if k != "__metadata__"}
a, b = load(sys.argv[1]), load(sys.argv[2])
worst = max((a[k] - b[k]).abs().max().item() for k in a)
print(f"{len(a)} gate tensors, max |difference| {worst:.3g} (tolerance {sys.argv[3]})")
sys.exit(0 if worst <= float(sys.argv[3]) else 1)
PY
}

case "${PART:-one}" in
  one)
    say "== bench all-reduce, a group of one (the binding: id, init, all-reduce, broadcast, destroy)"
    timeout 120 $M bench all-reduce --device cuda --sizes-mib 1,64,256 --iterations 10 2>&1 | tee -a "$R"
    say "== train-gate: plain vs torchrun --nproc-per-node 1 (launcher variables read, single process unchanged)"
    timeout 200 $M $GATE --batch-size 4 --grad-accum 2 --device cuda --out /tmp/dp-plain > "$OUT/dp-plain.log" 2>&1; say "plain rc=$?"
    timeout 200 $TR --nproc-per-node 1 $M $GATE --batch-size 4 --grad-accum 2 --device cuda --out /tmp/dp-tr1 > "$OUT/dp-tr1.log" 2>&1; say "torchrun 1 rc=$?"
    compare /tmp/dp-plain /tmp/dp-tr1 0 2>&1 | tee -a "$R"
    ;;
  two)
    [ "$ngpu" -ge 2 ] || { say "needs two GPUs"; exit 2; }
    say "== bench all-reduce on 2 ranks"
    timeout 180 $TR --nproc-per-node 2 $M bench all-reduce --device cuda --sizes-mib 1,16,64,256 2>&1 | tee -a "$R"
    # 1 GPU takes the global batch of 8 as one micro-batch (its own mean); 2 GPUs 4 rows each, normalised by the
    # step's counts: a wrong LM or gate denominator would show.
    say "== train-gate on the fixture: 1 GPU (batch 8) vs 2 GPUs (4 + 4), 10 steps, float32"
    timeout 200 $M $GATE --batch-size 8 --device cuda --out /tmp/dp-one > "$OUT/dp-one.log" 2>&1; say "1 GPU rc=$?"
    timeout 200 $TR --nproc-per-node 2 $M $GATE --batch-size 4 --grad-accum 2 --device cuda --out /tmp/dp-two > "$OUT/dp-two.log" 2>&1; say "2 GPUs rc=$?"
    compare /tmp/dp-one /tmp/dp-two 2>&1 | tee -a "$R"
    say "== resume across world sizes: 2 GPUs to step 4, 1 GPU to step 7, 2 GPUs to the end"
    timeout 200 $TR --nproc-per-node 2 $M $GATE --batch-size 4 --grad-accum 2 --device cuda --out /tmp/dp-staged --stop-after 4 > "$OUT/dp-staged1.log" 2>&1; say "stage 1 rc=$?"
    timeout 200 $M $GATE --batch-size 4 --grad-accum 2 --device cuda --out /tmp/dp-staged --resume --stop-after 7 > "$OUT/dp-staged2.log" 2>&1; say "stage 2 rc=$?"
    timeout 200 $TR --nproc-per-node 2 $M $GATE --batch-size 4 --grad-accum 2 --device cuda --out /tmp/dp-staged --resume > "$OUT/dp-staged3.log" 2>&1; say "stage 3 rc=$?"
    compare /tmp/dp-one /tmp/dp-staged 2>&1 | tee -a "$R"
    for how in KILL STOP; do
      say "== rank 1 gets SIG$how mid-run (collective timeout 20 s)"
      start=$(date +%s)
      METEORA_NCCL_TIMEOUT_S=20 timeout 300 $TR --nproc-per-node 2 $M ${GATE/--steps 10/--steps 100000} --batch-size 4 --grad-accum 2 --device cuda --out /tmp/dp-fail-$how > "$OUT/dp-fail-$how.log" 2>&1 &
      job=$!
      sleep 45
      victim=""
      for pid in $(pgrep -f "Meteora.Cli train-gate"); do grep -qz "^LOCAL_RANK=1$" /proc/$pid/environ 2>/dev/null && victim=$pid; done
      say "rank 1 pid=$victim"; [ -n "$victim" ] && kill -$how $victim
      hit=$(date +%s); wait $job; rc=$?; end=$(date +%s)
      say "job rc=$rc, ended $((end - hit)) s after the signal (started $((hit - start)) s in)"
      grep -h "error\|Error\|failed" "$OUT/dp-fail-$how.log" | head -5 | tee -a "$R"
      [ -n "$victim" ] && kill -CONT $victim 2>/dev/null; pkill -9 -f "Meteora.Cli train-gate" 2>/dev/null
    done
    ;;
  bench)
    [ "$ngpu" -ge 2 ] || { say "needs two GPUs"; exit 2; }
    B="bench train-gate --device cuda --dtype bfloat16 --config llama3-8b --adapters 28 --rank 8 --seq-len 512 --batch-size ${MICRO:-4} --steps 30 --warmup 5"
    say "== train-gate, 1 GPU"; timeout 140 $M $B --json "$OUT/train-gate-1gpu.json" 2>&1 | tail -6 | tee -a "$R"
    say "== train-gate, 2 GPUs"; timeout 140 $TR --nproc-per-node 2 $M $B --json "$OUT/train-gate-2gpu.json" 2>&1 | tail -6 | tee -a "$R"
    L="bench train-lora --device cuda --dtype bfloat16 --config llama3-8b --rank 8 --seq-len 512 --batch-size ${MICRO:-4} --steps 30 --warmup 5"
    say "== train-lora, 1 GPU"; timeout 140 $M $L --json "$OUT/train-lora-1gpu.json" 2>&1 | tail -6 | tee -a "$R"
    say "== train-lora, 2 GPUs"; timeout 140 $TR --nproc-per-node 2 $M $L --json "$OUT/train-lora-2gpu.json" 2>&1 | tail -6 | tee -a "$R"
    ;;
esac
