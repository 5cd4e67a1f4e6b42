# Sourced by the device scripts (bench/device-*.sh, bench/probe/*.sh) on the GPU machine, from the repository root:
# unpacks the self-contained CLI (scripts/publish-device.sh) afresh into /tmp/meteora, points it at the machine's
# libtorch, and sets OUT (results folder), M (the CLI) and F (the fixture model folder).
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
rm -rf /tmp/meteora && tar xzf device/meteora.tar.gz -C /tmp
source scripts/device-env.sh
M=/tmp/meteora/Meteora.Cli
F=/tmp/meteora/fixtures/tiny-llama3
