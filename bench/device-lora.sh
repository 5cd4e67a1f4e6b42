#!/usr/bin/env bash
# Device run for LoRA: train-lora on CUDA (bfloat16 base, float32 adapter and AdamW state) on a generated
# digit-reversal task with the fixture base, then check the adapter with PEFT itself (if installed): PEFT's
# logits for our adapter against ours.
set -euo pipefail
source bench/device-unpack.sh
python3 - <<'PY'
import json, random, os
r = random.Random(1); os.makedirs("/tmp/task", exist_ok=True); seen = set()
def draw(n):
    out = []
    while len(out) < n:
        d = [r.randint(1, 9) for _ in range(3)]
        p = "reverse: " + " ".join(map(str, d)) + " =>"
        if p in seen: continue
        seen.add(p); out.append({"prompt": p, "response": " " + " ".join(map(str, d[::-1]))})
    return out
test, train = draw(100), draw(600)
for name, rows in (("train", train), ("test", test)):
    with open(f"/tmp/task/{name}.jsonl", "w") as f: f.writelines(json.dumps(x) + "\n" for x in rows)
PY
$M train-lora --device cuda --dtype bfloat16 --model $F/base --data /tmp/task --out "$OUT/lora-cuda" --steps 400 --batch-size 16 --lr 3e-3 --warmup-steps 20 --eval-every 100 --seed 5 2>&1 | grep -E "eval|adapter|error" | tee "$OUT/train-lora-cuda.txt"
ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$F/reference.json'))['prompts'][0]['ids'])))")
$M forward --model $F/base --adapter "$OUT/lora-cuda" --ids "$ids" --out /tmp/ours.safetensors 2>/dev/null
python3 - "$F" "$OUT/lora-cuda" "$ids" <<'PY' | tee "$OUT/peft-check.txt"
import sys, torch
f, adapter, ids = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3].split(",")]
try:
    import peft
except ImportError:
    print("peft is not installed on this machine: PEFT load check skipped"); sys.exit(0)
from transformers import AutoModelForCausalLM
from safetensors.torch import load_file
base = AutoModelForCausalLM.from_pretrained(f + "/base", dtype=torch.float32)
model = peft.PeftModel.from_pretrained(base, adapter).eval()
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0]
    with model.disable_adapter():
        plain = model(torch.tensor([ids])).logits[0]
ours = load_file("/tmp/ours.safetensors")["logits"]
print(f"peft {peft.__version__}: max |ours - PEFT| = {(logits - ours).abs().max().item():.3g} over logits {tuple(ours.shape)}; the adapter moves them by up to {(logits - plain).abs().max().item():.3g}")
PY
