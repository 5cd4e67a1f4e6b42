#!/usr/bin/env bash
# Issue #18 item 9: the MeteoRA routing kernel on a GPU other than the first. The kernel is compiled with NVRTC and
# loaded into the target device's primary context (Runtime/CudaKernel.Load: cuDevicePrimaryCtxRetain(device) +
# cuCtxSetCurrent), so `--device cuda:1` must give the tokens `--device cuda:0` gives, with the kernel and with the
# ATen routing. Needs a machine with two GPUs (device tool kind nvidia-h200-x2), the published CLI carried
# (scripts/publish-device.sh):   bash bench/device-second-gpu.sh
set -uo pipefail
source bench/device-unpack.sh
nvidia-smi --query-gpu=index,name --format=csv,noheader
[ "$(nvidia-smi -L | wc -l)" -ge 2 ] || { echo "needs two GPUs"; exit 2; }
ids=0,270,27,1000,5,77
run() {  # device, kernel on/off, graphs on/off → the generated ids as JSON
  local extra=""; [ "$3" = off ] && extra="--no-cuda-graph"
  METEORA_ROUTING_KERNEL=$2 timeout 120 $M generate --device "$1" --dtype bfloat16 --model $F/base --meteora $F/meteora \
    --ids $ids --max-new-tokens 24 --json $extra 2> "$OUT/gen-$1-$2-$3.log"
}
declare -A out
for dev in cuda:0 cuda:1; do for k in on off; do for g in on off; do
  out[$dev-$k-$g]=$(run $dev $k $g); echo "$dev kernel=$k graphs=$g: ${out[$dev-$k-$g]}" | tee -a "$OUT/second-gpu.txt"
done; done; done
ref=${out[cuda:0-on-on]}; bad=0
for key in "${!out[@]}"; do [ "${out[$key]}" = "$ref" ] || { echo "DIFFERS: $key" | tee -a "$OUT/second-gpu.txt"; bad=1; }; done
grep -h "routing kernel\|NVRTC\|error" "$OUT"/gen-*.log | sort | uniq -c | tee -a "$OUT/second-gpu.txt"
[ $bad = 0 ] && echo "second GPU: all 8 runs give the same tokens" | tee -a "$OUT/second-gpu.txt"
exit $bad
