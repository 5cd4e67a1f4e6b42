#!/usr/bin/env bash
# Issue #17 item 3 on one GPU, the published CLI carried (scripts/publish-device.sh):   bash bench/device-selective.sh
# The selective mix kernels (src/Meteora/Moe/SelectiveMixKernel.cs: shrink = float32 gate logits and x A_allᵀ in one
# launch, expand = top-k and only the chosen adapters' B columns added into the base output; METEORA_SELECTIVE_MIX)
# against the fused [W; A; G] GEMM path they replace at decode sizes.
# 1. layer: `bench layer` at LLaMA-3-8B projection shapes, 28 adapters r = 8, top-1 and top-2, 1…64 tokens: dense
#    (the default: selective up to METEORA_SELECTIVE_MAX_TOKENS) and dense-gemm (selective off) with their error
#    against loop, so the split point is read off one table;
# 2. parity: greedy tokens of the fixture's MeteoRA with the kernels on and off (32 tokens from each prompt);
# 3. model: `bench model` base and MeteoRA top-2 with the kernels off and on (decode b1, b8; prefill unaffected), and
#    `bench phases` of top-2 with them on.
# The decode GEMV kernel (src/Meteora/Llama/DecodeGemv.cs; METEORA_DECODE_GEMV) computes a one-token MeteoRA
# projection's base rows, float32 gate logits and rank values in one launch (the shrink is then not launched). Three
# sets: off (both off: cuBLAS and the fused-GEMM mix), selective (the mix kernels, cuBLAS and the shrink), on (both).
# Results come back as selective.tar.gz (and the text files beside it). PARTS (any of layer, parity, model) runs only those.
set -uo pipefail
kernels() {
  case $1 in
    off) echo "METEORA_SELECTIVE_MIX=off METEORA_DECODE_GEMV=off" ;;
    selective) echo "METEORA_SELECTIVE_MIX=on METEORA_DECODE_GEMV=off" ;;
    on) echo "METEORA_SELECTIVE_MIX=on METEORA_DECODE_GEMV=on" ;;
  esac
}
PARTS=${PARTS:-layer parity model}
has() { [[ " $PARTS " == *" $1 "* ]]; }
source bench/device-unpack.sh
FINAL="$OUT"; OUT=$(mktemp -d)
trap 'tar czf "$FINAL/selective.tar.gz" -C "$OUT" .; cp "$OUT"/*.txt "$FINAL"/ 2>/dev/null' EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
if has layer; then
  METEORA_SELECTIVE_MAX_TOKENS=64 timeout 200 $M bench layer --device cuda --dtype bfloat16 --shapes 4096x4096,4096x1024,4096x14336,14336x4096 \
    --adapters 28 --ranks 8 --top-k 1,2 --tokens 1,8,16,32 --runs 30 --warmup 5 --json "$OUT/layer.json" > "$OUT/layer.txt" 2> "$OUT/layer.log"
  { head -3 "$OUT/layer.log"; cat "$OUT/layer.txt"; } | tee "$OUT/layer-summary.txt" | head -80
fi
if has parity; then
  # (a) logits: bfloat16 `forward` of the fixture's MeteoRA (top-2, T 1) with the kernels off and on (the prompts are
  # shorter than 16 tokens, so prefill runs them too), each against transformers' float32 logits;
  # (b) greedy tokens off and on; where they part, the float32 margin between the two candidates (CPU-free: the
  # kernels-off bfloat16 forward of the prompt plus the common tokens).
  for p in 0 1; do
    ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$F/reference.json'))['prompts'][$p]['ids'])))")
    for f in off on; do
      env $(kernels $f) $M forward --device cuda --dtype bfloat16 --model $F/base --meteora $F/meteora --top-k 2 --temperature 1 \
        --ids "$ids" --out "$OUT/fwd-$f$p.safetensors" 2> "$OUT/fwd-$f$p.log"
    done
  done
  for p in 0 1 2; do
    ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$F/reference.json'))['prompts'][$p]['ids'])))")
    for f in off on; do
      env $(kernels $f) $M generate --device cuda --dtype bfloat16 --model $F/base --meteora $F/meteora --ids "$ids" --max-new-tokens 32 --json \
        > "$OUT/gen-$f$p.json" 2> "$OUT/gen-$f$p.log"
      env $(kernels $f) $M generate --device cuda --dtype bfloat16 --model $F/base --ids "$ids" --max-new-tokens 32 --json \
        > "$OUT/base-$f$p.json" 2> "$OUT/base-$f$p.log"
    done
    python3 - "$OUT" $p <<'PY' > "$OUT/split$p.ids"
import sys, json
out, p = sys.argv[1], sys.argv[2]
a, b = (json.load(open(f"{out}/gen-{k}{p}.json")) for k in ("off", "on"))
common = 0
while common < len(a["new_token_ids"]) and a["new_token_ids"][common] == b["new_token_ids"][common]: common += 1
if common < len(a["new_token_ids"]):
    print(",".join(map(str, a["prompt_ids"] + a["new_token_ids"][:common])), common, a["new_token_ids"][common], b["new_token_ids"][common])
PY
    if [ -s "$OUT/split$p.ids" ]; then
      read sids step toff ton < "$OUT/split$p.ids"
      env $(kernels off) $M forward --device cuda --dtype bfloat16 --model $F/base --meteora $F/meteora --ids "$sids" --out "$OUT/split$p.safetensors" 2>/dev/null
      echo "$step $toff $ton" > "$OUT/split$p.step"
    fi
  done
  python3 - "$OUT" "$F" <<'PY' | tee "$OUT/parity.txt"
import sys, json, os
from safetensors.torch import load_file
out, f = sys.argv[1], sys.argv[2]
ref = load_file(f + "/reference.safetensors")
for p in range(2):
    off = load_file(f"{out}/fwd-off{p}.safetensors")["logits"].float(); on = load_file(f"{out}/fwd-on{p}.safetensors")["logits"].float()
    r = ref[f"meteora.k2.T1.logits.{p}"].float()
    print(f"MeteoRA top-2 prompt {p}: max|on-off| = {(on-off).abs().max().item():.3g}, max|off-transformers| = {(off-r).abs().max().item():.3g}, "
          f"max|on-transformers| = {(on-r).abs().max().item():.3g}, argmax on = off at {(on.argmax(-1) == off.argmax(-1)).float().mean().item():.3f} of positions")
for p in range(3):
    a, b = (open(f"{out}/base-{k}{p}.json").read() for k in ("off", "on"))
    print(f"base prompt {p}: 32 greedy tokens " + ("the same off and on" if a == b and a.strip() else f"DIFFER:\n  off {a}\n  on  {b}"))
for p in range(3):
    if not os.path.exists(f"{out}/split{p}.step"):
        print(f"prompt {p}: 32 greedy tokens the same with the kernels off and on"); continue
    step, toff, ton = map(int, open(f"{out}/split{p}.step").read().split())
    last = load_file(f"{out}/split{p}.safetensors")["logits"][-1].float()
    print(f"prompt {p}: tokens part at step {step} ({toff} off, {ton} on); there the kernels-off bfloat16 logits are "
          f"{last[toff].item():.4f} vs {last[ton].item():.4f} (gap {abs(last[toff]-last[ton]).item():.4f}; top logit {last.max().item():.4f})")
PY
fi
if has model; then
  for f in off selective on; do
    env $(kernels $f) timeout 150 $M bench model --device cuda --dtype bfloat16 --config llama3-8b --variants base,top2 --strategies auto \
      --prefill 1x512 --decode 1,8 --prompt-len 512 --new-tokens 128 --runs 10 --warmup 8 \
      --json "$OUT/model-$f.json" > "$OUT/model-$f.out" 2> "$OUT/model-$f.log"
    { echo "== kernels $f"; head -4 "$OUT/model-$f.log"; cat "$OUT/model-$f.out"; } | tee -a "$OUT/model.txt"
  done
  for v in base top2; do
    timeout 120 $M bench phases --device cuda --dtype bfloat16 --config llama3-8b --variant $v \
      --prefill 1x512 --decode 1,8 --prompt-len 512 --runs 20 --warmup 3 --json "$OUT/phases-$v.json" > "$OUT/phases-$v.out" 2> "$OUT/phases-$v.log"
    { echo "== phases $v, kernels on"; head -2 "$OUT/phases-$v.log"; cat "$OUT/phases-$v.out"; } | tee -a "$OUT/phases.txt"
  done
fi
