#!/usr/bin/env bash
# Runs the whole test suite (xunit). Setup first: a fresh Debian 12 machine gets what it lacks.
# Extra arguments go to `dotnet test`, e.g. ./test.sh --filter "FullyQualifiedName~Parity".
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
bash scripts/setup.sh || exit 1
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
# NVRTC unpacked by setup (if it could be fetched): the routing kernel's compile tests use it.
nvrtc="$here/.cache/nvrtc/usr/lib/x86_64-linux-gnu/libnvrtc.so.11.2"
[ -e "$nvrtc" ] && export METEORA_NVRTC="$nvrtc"
log=$(mktemp /tmp/meteora-test.XXXXXX.log)
# Per-test lines for failures and skips (with their reasons); passes are counted, not listed.
dotnet test tests/Meteora.Tests/Meteora.Tests.csproj -c Release -nologo \
  --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log" | grep -vE '^\s+Passed [A-Z]'
status=${PIPESTATUS[0]}
count() { sed -nE "s/^ +$1: +([0-9]+)\$/\\1/p" "$log" | tail -1; }
# One closing line that CI reads: "N passed, N failed, N skipped".
echo "tests: $(count Passed || true) passed, $(count Failed || true) failed, $(count Skipped || true) skipped" \
  | sed -E 's/(^|: | )( passed| failed| skipped)/\10\2/g'
rm -f "$log"

# The demo end to end on its smoke settings (`demo --quick`): every stage runs and the report is written.
demo=$(mktemp -d /tmp/meteora-demo-quick.XXXXXX)
report_complete() {
  for f in results.md results.json results.png routing-composite-3.png routing-composite-3.html; do
    [ -s "$demo/report/$f" ] || { echo "missing $demo/report/$f" >> "$demo.err"; return 1; }
  done
  # The evaluation stage's time by part, in the log and in results.json.
  for part in '"per-task peft"' '"composite-3 meteora-top2"'; do
    grep -q "$part" "$demo/report/results.json" || { echo "results.json: no evaluation_seconds entry $part" >> "$demo.err"; return 1; }
  done
  grep -q "evaluation time: " "$demo.err" || { echo "demo log: no evaluation time line" >> "$demo.err"; return 1; }
}
echo "demo --quick in $demo ..."
if ./meteora demo --quick --dir "$demo" > "$demo.out" 2> "$demo.err" && report_complete && grep -q "PEFT-oracle mean" "$demo.out"; then
  echo "demo --quick: ok ($(grep '^total' "$demo.out"))"
else
  echo "demo --quick: FAILED"; tail -20 "$demo.err"; status=1
fi
rm -rf "$demo" "$demo.out" "$demo.err"

# Device and maintenance scripts do not run here (no GPU); they must at least parse.
bad=""
for f in meteora test.sh scripts/*.sh bench/*.sh bench/probe/*.sh; do bash -n "$f" 2>/dev/null || bad="$bad $f"; done
if [ -z "$bad" ]; then echo "scripts: ok (bash -n)"; else echo "scripts: syntax errors in$bad"; status=1; fi

# The packages as a user gets them: pack, a sample restored from the folder feed, the tool installed and run.
bash scripts/check-packages.sh || status=1
exit "$status"
