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
# Results come back as selective.tar.gz (and the text files beside it). PARTS (any of layer, parity, model) runs only those.
set -uo pipefail
PARTS=${PARTS:-layer parity model}
has() { [[ " $PARTS " == *" $1 "* ]]; }
source bench/device-unpack.sh
FINAL="$OUT"; OUT=$(mktemp -d)
trap 'tar czf "$FINAL/selective.tar.gz" -C "$OUT" .; cp "$OUT"/*.txt "$FINAL"/ 2>/dev/null' EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
if has layer; then
  METEORA_SELECTIVE_MAX_TOKENS=64 timeout 200 $M bench layer --device cuda --dtype bfloat16 --shapes 4096x4096,4096x1024,4096x14336,14336x4096 \
    --adapters 28 --ranks 8 --top-k 1,2 --tokens 1,4,8,16,32,64 --runs 30 --warmup 5 --json "$OUT/layer.json" > "$OUT/layer.txt" 2> "$OUT/layer.log"
  { head -3 "$OUT/layer.log"; cat "$OUT/layer.txt"; } | tee "$OUT/layer-summary.txt" | head -80
fi
if has parity; then
  for p in 0 1 2; do
    ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('$F/reference.json'))['prompts'][$p]['ids'])))")
    for f in off on; do
      METEORA_SELECTIVE_MIX=$f $M generate --device cuda --dtype bfloat16 --model $F/base --meteora $F/meteora --ids "$ids" --max-new-tokens 32 --json \
        > "$OUT/gen-$f$p.json" 2> "$OUT/gen-$f$p.log"
    done
    if cmp -s "$OUT/gen-off$p.json" "$OUT/gen-on$p.json" && [ -s "$OUT/gen-on$p.json" ]; then echo "prompt $p: MeteoRA greedy tokens the same off and on"
    else echo "prompt $p: DIFFER"; cat "$OUT/gen-off$p.json" "$OUT/gen-on$p.json"; tail -2 "$OUT/gen-on$p.log"; fi
  done | tee "$OUT/parity.txt"
fi
if has model; then
  for f in off on; do
    METEORA_SELECTIVE_MIX=$f timeout 150 $M bench model --device cuda --dtype bfloat16 --config llama3-8b --variants base,top2 --strategies auto \
      --prefill 1x512 --decode 1,8 --prompt-len 512 --new-tokens 128 --runs 10 --warmup 8 \
      --json "$OUT/model-$f.json" > "$OUT/model-$f.out" 2> "$OUT/model-$f.log"
    { echo "== selective $f"; head -3 "$OUT/model-$f.log"; cat "$OUT/model-$f.out"; } | tee -a "$OUT/model.txt"
  done
  timeout 120 $M bench phases --device cuda --dtype bfloat16 --config llama3-8b --variant top2 \
    --prefill 1x512 --decode 1,8 --prompt-len 512 --runs 20 --warmup 3 --json "$OUT/phases-top2.json" > "$OUT/phases-top2.out" 2> "$OUT/phases-top2.log"
  { echo "== phases top2, selective on"; head -2 "$OUT/phases-top2.log"; cat "$OUT/phases-top2.out"; } | tee "$OUT/phases.txt"
fi
