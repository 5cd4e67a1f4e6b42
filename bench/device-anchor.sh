#!/usr/bin/env bash
# Issue #17 item 4: ours against the strongest PyTorch anchors in one call on one GPU — `meteora bench model` (base
# and MeteoRA top-2, 28 adapters r = 8), the gpt-fast-style reference (bench/reference/gptfast_anchor.py, eager and
# torch.compile) and transformers eager; LLaMA-3-8B shapes, random bfloat16 weights, decode reading each token on the
# host in all three. The published CLI carried (scripts/publish-device.sh):   bash bench/device-anchor.sh
# BATCHES overrides the batch sizes (default "1 8"; torch.compile max-autotune costs minutes per shape, so add 64 with care).
# DECODE_ONLY=1 times decode only, ours and the anchor's compiled step (no prefill compile, no transformers): a same-call
# decode ratio in ≈ 2 min. Results come back as one archive, anchor.tar.gz.
set -uo pipefail
source bench/device-unpack.sh
FINAL="$OUT"; OUT=$(mktemp -d)
trap 'tar czf "$FINAL/anchor.tar.gz" -C "$OUT" .' EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
b=${BATCHES:-1 8}
ONLY=""; PREFILLS="1x512,8x512,1x2048"; MODES="eager compiled"
[ -n "${DECODE_ONLY:-}" ] && { ONLY="--decode-only"; PREFILLS=""; MODES="compiled"; }
python3 bench/reference/gptfast_anchor.py --check | tee "$OUT/gptfast-check.txt" || echo "ANCHOR CHECK FAILED: its numbers are not LLaMA's" | tee -a "$OUT/gptfast-check.txt"
timeout 150 $M bench model --device cuda --dtype bfloat16 --config llama3-8b --variants base,top2 --strategies auto \
  --prefill "$PREFILLS" --decode "$(echo $b | tr ' ' ,)" --prompt-len 512 --new-tokens 128 --runs 5 --warmup 4 \
  --json "$OUT/model-ours.json" > "$OUT/model-ours.txt" 2> "$OUT/model-ours.log"
cat "$OUT/model-ours.txt"
timeout 270 python3 bench/reference/gptfast_anchor.py --mode $MODES $ONLY --batch $b --prompt-len 512 --new-tokens 128 \
  --runs 5 --warmup 2 --json "$OUT/gptfast.json" > "$OUT/gptfast.txt" 2> "$OUT/gptfast.log"
cat "$OUT/gptfast.txt"; tail -3 "$OUT/gptfast.log"
[ -z "${DECODE_ONLY:-}" ] && timeout 60 python3 bench/reference/hf_llama_bench.py --attn eager --batch 1 --prompt-len 512 --new-tokens 128 --runs 5 --warmup 2 \
  --json "$OUT/hf-eager.json" 2>&1 | tail -4
