#!/usr/bin/env bash
# Device run for bfloat16 routing fidelity (issue #18; ranking from the float32 gate, `Moe.ExactRanking`), one GPU:
#  1. the fixture MeteoRA model in bfloat16 on CUDA against transformers' float32 logits (reference.safetensors), every
#     (k, T) the reference holds, with exact ranking on and off, the routing kernel on (CUDA-graph-free forward) and off;
#  2. `bench routing` (top-k agreement with the float32 model per projection and token; the kernel's logits against
#     the ATen path's) on the fixture and on a LLaMA-3-8B-shaped random model with 28 rank-8 adapters;
#  3. the speed cost: `bench layer` (8B shapes, 28 adapters, top-2) and `bench model` top-2 prefill and decode, with
#     METEORA_EXACT_RANKING on and off, in one call so the ratios compare like with like.
# Results come back as one archive, fidelity.tar.gz (the device tool returns at most 8 files), written on exit.
set -uo pipefail
source bench/device-unpack.sh
FINAL="$OUT"; OUT=$(mktemp -d)
trap 'tar czf "$FINAL/fidelity.tar.gz" -C "$OUT" .' EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
if [ "${PART:-all}" = all ] || [ "${PART:-}" = parity ]; then
  for p in 0 1; do
    ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$F/reference.json'))['prompts'][$p]['ids'])))")
    for kt in "1 1" "2 1" "2 15" "3 1"; do
      set -- $kt
      for exact in on off; do for kernel in on off; do
        METEORA_EXACT_RANKING=$exact METEORA_ROUTING_KERNEL=$kernel $M forward --device cuda --dtype bfloat16 --model $F/base --meteora $F/meteora \
          --top-k $1 --temperature $2 --ids "$ids" --out /tmp/fid-$p-$1-$2-$exact-$kernel.safetensors 2>/dev/null
      done; done
    done
    $M forward --device cuda --dtype bfloat16 --model $F/base --ids "$ids" --out /tmp/fid-base-$p.safetensors 2>/dev/null
  done
  python3 - "$F" <<'PY' | tee "$OUT/fidelity-parity.txt"
import sys
from safetensors.torch import load_file
ref = load_file(sys.argv[1] + "/reference.safetensors")
for p in (0, 1):
    base = (load_file(f"/tmp/fid-base-{p}.safetensors")["logits"].float() - ref[f"base.logits.{p}"]).abs().max().item()
    print(f"prompt {p}: base alone, bfloat16 vs transformers float32: max |diff| {base:.3g}")
    for k, t in ((1, 1), (2, 1), (2, 15), (3, 1)):
        want = ref[f"meteora.k{k}.T{t}.logits.{p}"]
        cells = []
        for exact in ("on", "off"):
            for kernel in ("on", "off"):
                got = load_file(f"/tmp/fid-{p}-{k}-{t}-{exact}-{kernel}.safetensors")["logits"].float()
                cells.append(f"exact {exact}/kernel {kernel} {(got - want).abs().max().item():.3g}")
        print(f"prompt {p} k{k} T{t}: " + ", ".join(cells))
PY
fi
if [ "${PART:-all}" = all ] || [ "${PART:-}" = routing ]; then
  $M bench routing --device cuda --dtype bfloat16 --model $F/base --meteora $F/meteora --top-k 2 --tokens 512 --json "$OUT/routing-fixture.json" 2>&1 | tee "$OUT/routing-fixture.txt"
  $M bench routing --device cuda --dtype bfloat16 --config llama3-8b --adapters 28 --rank 8 --top-k 2 --tokens 512 --json "$OUT/routing-8b.json" 2>&1 | tee "$OUT/routing-8b.txt"
fi
if [ "${PART:-all}" = all ] || [ "${PART:-}" = speed ]; then
  for exact in on off; do
    METEORA_EXACT_RANKING=$exact $M bench layer --device cuda --dtype bfloat16 --adapters 28 --ranks 8 --top-k 2 --tokens 1,16,256,4096 \
      --runs 10 --warmup 3 --json "$OUT/layer-exact-$exact.json" > "$OUT/layer-exact-$exact.txt" 2> "$OUT/layer-exact-$exact.log"
    echo "== bench layer, exact ranking $exact"; cat "$OUT/layer-exact-$exact.txt"
    METEORA_EXACT_RANKING=$exact $M bench model --device cuda --dtype bfloat16 --config llama3-8b --prefill 1x512,8x512 --decode 1,8 --prompt-len 512 \
      --variants base,top2 --strategies auto --new-tokens 128 --runs 5 --warmup 8 --json "$OUT/model-exact-$exact.json" > "$OUT/model-exact-$exact.txt" 2> "$OUT/model-exact-$exact.log"
    echo "== bench model, exact ranking $exact"; cat "$OUT/model-exact-$exact.txt"
  done
fi
