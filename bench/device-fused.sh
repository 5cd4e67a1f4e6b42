#!/usr/bin/env bash
# Issue #17 items 1–2 on one GPU, the published CLI carried (scripts/publish-device.sh):  bash bench/device-fused.sh
# The kernels: fused elementwise (src/Meteora/Llama/FusedKernels.cs: RMSNorm with the residual add before it, rotary of
# q and k in one launch, SiLU·up; METEORA_FUSED_KERNELS) and decode attention over the filled cache slots
# (src/Meteora/Llama/DecodeAttention.cs; METEORA_DECODE_ATTENTION), and q/k/v as one GEMM for plain projections
# (LlamaAttention; METEORA_FUSED_QKV). Four sets: off (all off), fused (elementwise only),
# qkv (elementwise and q/k/v), on (all three).
# 1. parity: bfloat16 `forward` of the fixture's three prompts with the kernels off and on, each against transformers'
#    float32 logits (fixtures/tiny-llama3/reference.safetensors); greedy tokens of base and MeteoRA off and on;
# 2. the per-phase breakdown (`bench phases`) of the base with the kernels off and on, and of MeteoRA top-2 with them on;
# 3. speed: `bench model` (LLaMA-3-8B shapes, random bfloat16 weights; base and MeteoRA top-2) for each set, in this
#    one call, so their ratios are taken on one machine.
# Results come back as fused.tar.gz (and the text files beside it). PARTS="phases" (any of parity, phases, model) runs
# only those parts.
set -uo pipefail
PARTS=${PARTS:-parity phases model}
has() { [[ " $PARTS " == *" $1 "* ]]; }
kernels() {   # the environment of a kernel set
  case $1 in
    off) echo "METEORA_FUSED_KERNELS=off METEORA_DECODE_ATTENTION=off METEORA_FUSED_QKV=off" ;;
    fused) echo "METEORA_FUSED_KERNELS=on METEORA_DECODE_ATTENTION=off METEORA_FUSED_QKV=off" ;;
    qkv) echo "METEORA_FUSED_KERNELS=on METEORA_DECODE_ATTENTION=off METEORA_FUSED_QKV=on" ;;
    on) echo "METEORA_FUSED_KERNELS=on METEORA_DECODE_ATTENTION=on METEORA_FUSED_QKV=on" ;;
  esac
}
source bench/device-unpack.sh
FINAL="$OUT"; OUT=$(mktemp -d)
trap 'tar czf "$FINAL/fused.tar.gz" -C "$OUT" .; cp "$OUT"/*.txt "$FINAL"/ 2>/dev/null' EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
if has parity; then
  for p in 0 1 2; do
    ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$F/reference.json'))['prompts'][$p]['ids'])))")
    for f in off on; do
      env $(kernels $f) $M forward --device cuda --dtype bfloat16 --model $F/base --ids "$ids" --out "$OUT/$f$p.safetensors" 2> "$OUT/forward-$f$p.log"
      env $(kernels $f) $M generate --device cuda --dtype bfloat16 --model $F/base --ids "$ids" --max-new-tokens 32 --json > "$OUT/gen-base-$f$p.json" 2> "$OUT/gen-base-$f$p.log"
      env $(kernels $f) $M generate --device cuda --dtype bfloat16 --model $F/base --meteora $F/meteora --ids "$ids" --max-new-tokens 32 --json \
        > "$OUT/gen-meteora-$f$p.json" 2> "$OUT/gen-meteora-$f$p.log"
    done
  done
  python3 - "$OUT" "$F" <<'PY' | tee "$OUT/parity.txt"
import sys, json
from safetensors.torch import load_file
out, f = sys.argv[1], sys.argv[2]
ref = load_file(f + "/reference.safetensors")
for p in range(3):
    off = load_file(f"{out}/off{p}.safetensors")["logits"].float(); on = load_file(f"{out}/on{p}.safetensors")["logits"].float()
    r = ref[f"base.logits.{p}"].float()
    same = (on.argmax(-1) == off.argmax(-1)).float().mean().item()
    print(f"prompt {p}: max|on-off| = {(on-off).abs().max().item():.3g}, max|off-transformers| = {(off-r).abs().max().item():.3g}, "
          f"max|on-transformers| = {(on-r).abs().max().item():.3g}, argmax on = off at {same:.3f} of positions")
    for model in ("base", "meteora"):
        a, b = (open(f"{out}/gen-{model}-{k}{p}.json").read() for k in ("off", "on"))
        print(f"prompt {p}, {model}: 32 greedy tokens " + ("the same with the kernels off and on" if a == b and a.strip() else f"DIFFER:\n  off {a}\n  on  {b}"))
PY
fi
# 2. where the time goes (issue #17 item 1): per-phase GPU time of a prefill 1×512 and a decode step at batch 1 and 8
#    (CUDA events at the model's phase boundaries; decode as a replayed CUDA graph).
if has phases; then
  for v in "base off" "base on" "top2 on"; do
    set -- $v
    env $(kernels $2) timeout 150 $M bench phases --device cuda --dtype bfloat16 --config llama3-8b --variant $1 \
      --prefill 1x512 --decode 1,8 --prompt-len 512 --runs 20 --warmup 3 --json "$OUT/phases-$1-$2.json" > "$OUT/phases-$1-$2.out" 2> "$OUT/phases-$1-$2.log"
    { echo "== phases $1, kernels $2"; head -2 "$OUT/phases-$1-$2.log"; cat "$OUT/phases-$1-$2.out"; } | tee -a "$OUT/phases.txt"
  done
fi
if has model; then
  for f in off fused qkv on; do
    env $(kernels $f) timeout 140 $M bench model --device cuda --dtype bfloat16 --config llama3-8b --variants base,top2 --strategies auto \
      --prefill 1x512,8x512 --decode 1,8 --prompt-len 512 --new-tokens 128 --runs 10 --warmup 8 \
      --json "$OUT/model-$f.json" > "$OUT/model-$f.out" 2> "$OUT/model-$f.log"
    { echo "== kernels $f"; head -3 "$OUT/model-$f.log"; cat "$OUT/model-$f.out"; } | tee -a "$OUT/model.txt"
  done
fi
