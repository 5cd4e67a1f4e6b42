#!/usr/bin/env bash
# The packages as a user gets them (issue #19), run by ./test.sh:
#  1. scripts/pack.sh packs Meteora, Meteora.Server and the Meteora.Cli tool into a folder feed (unique version);
#  2. samples/RoutedGeneration is restored from that feed into an empty package folder (other packages come
#     read-only from the machine's NuGet folder) and run on the shared tiny fixture;
#  3. the tool is installed with `dotnet tool install --tool-path` and one `meteora` command runs through it
#     against a libtorch on LD_LIBRARY_PATH (README "Packages"), giving the same tokens as ./meteora;
#  4. with no libtorch anywhere, the tool stops with one line naming the missing backend.
# Prints "packages: ok (…)" or "packages: FAILED: <why>" and exits 0 / 1.
set -uo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
fixture="$(cd ../shared/fixtures/tiny-llama3 2>/dev/null && pwd)" || { echo "packages: FAILED: no ../shared/fixtures/tiny-llama3"; exit 1; }
command -v unzip >/dev/null || { echo "packages: FAILED: unzip is not installed (scripts/setup.sh installs it)"; exit 1; }
# The installed tool's launcher finds .NET through DOTNET_ROOT when the SDK is not in a default location.
export DOTNET_ROOT="${DOTNET_ROOT:-$(dirname "$(readlink -f "$(command -v dotnet)")")}"
work=$(mktemp -d /tmp/meteora-packages.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "packages: FAILED: $*"; [ -s "$work/log" ] && tail -15 "$work/log"; exit 1; }
start=$(date +%s)
nuget_home="${NUGET_PACKAGES:-$HOME/.nuget/packages}"

# 1. pack
version=$(bash scripts/pack.sh "$work/feed" "check.$(date +%Y%m%d%H%M%S)" 2>"$work/log") || fail "scripts/pack.sh"
for id in Meteora Meteora.Server Meteora.Cli; do
  for ext in nupkg snupkg; do [ -s "$work/feed/$id.$version.$ext" ] || fail "missing $id.$version.$ext"; done
done
nuspec=$(unzip -p "$work/feed/Meteora.$version.nupkg" Meteora.nuspec)
grep -q '<license type="expression">MIT</license>' <<<"$nuspec" || fail "Meteora.nuspec has no license expression"
grep -q '<readme>README.md</readme>' <<<"$nuspec" || fail "Meteora.nuspec has no readme"
grep -q 'id="TorchSharp"' <<<"$nuspec" || fail "Meteora does not depend on TorchSharp"
grep -qiE 'dependency id="(TorchSharp-cpu|TorchSharp-cuda|libtorch)' <<<"$nuspec" && fail "Meteora depends on a native libtorch package"
# Listings are read whole before grep: `unzip -l | grep -q` can fail under pipefail when grep stops reading early.
library=$(unzip -l "$work/feed/Meteora.$version.nupkg") || fail "unzip Meteora.$version.nupkg"
tool=$(unzip -l "$work/feed/Meteora.Cli.$version.nupkg") || fail "unzip Meteora.Cli.$version.nupkg"
symbols=$(unzip -l "$work/feed/Meteora.$version.snupkg") || fail "unzip Meteora.$version.snupkg"
grep -q 'lib/net10.0/Meteora.pdb' <<<"$symbols" || fail "Meteora.$version.snupkg has no Meteora.pdb"
# The entry-points page (docs/api/index.md) names only types and members the packed library documents.
docs=$(unzip -p "$work/feed/Meteora.$version.nupkg" lib/net10.0/Meteora.xml; unzip -p "$work/feed/Meteora.Server.$version.nupkg" lib/net10.0/Meteora.Server.xml)
for ref in $(grep -o 'xref:[A-Za-z0-9_.]*' docs/api/index.md | sed 's/^xref://' | sort -u); do
  grep -qE "name=\"[TM]:$ref[(\"]" <<<"$docs" || fail "docs/api/index.md links $ref, which the packed XML docs do not have"
done
grep -q 'lib/net10.0/Meteora.xml' <<<"$library" || fail "Meteora has no XML docs"
grep -q 'DotnetToolSettings.xml' <<<"$tool" || fail "Meteora.Cli is not a tool package"
grep -qiE 'libtorch_cpu|libtorch\.so' <<<"$tool" && fail "the tool package carries libtorch"

# 2. the sample, restored from the feed into an empty package folder
dotnet build samples/RoutedGeneration -c Release -nologo -v quiet -clp:ErrorsOnly -o "$work/sample" \
  -p:MeteoraVersion="$version" -p:RestorePackagesPath="$work/packages" -p:RestoreFallbackFolders="$nuget_home" \
  --source "$work/feed" --source https://api.nuget.org/v3/index.json >"$work/log" 2>&1 || fail "sample build"
[ -d "$work/packages/meteora/$version" ] || fail "the sample did not restore Meteora $version from the feed"
dotnet "$work/sample/RoutedGeneration.dll" "$fixture/base" "$fixture/meteora" "reverse: abc =>" 6 >"$work/sample.out" 2>"$work/log" \
  || fail "sample run"
grep -q '^3 adapters (reverse, add, upper), top-2, 14 projections$' "$work/sample.out" || fail "sample output: $(head -1 "$work/sample.out")"
[ "$(grep -cE ' output .* -> (reverse|add|upper) \([0-9]+/14 projections\)$' "$work/sample.out")" -eq 5 ] \
  || fail "sample output has no routed line per generated token"

# 3. the tool
dotnet tool install Meteora.Cli --version "$version" --tool-path "$work/tools" --add-source "$work/feed" >"$work/log" 2>&1 \
  || fail "dotnet tool install"
[ "$("$work/tools/meteora" --version | cut -d+ -f1)" = "$version" ] || fail "meteora --version is not $version"
libtorch="$nuget_home/libtorch-cpu-linux-x64/2.10.0/runtimes/linux-x64/native"
[ -e "$libtorch/libtorch_cpu.so" ] || fail "no CPU libtorch at $libtorch (scripts/setup.sh restores it)"
gen=(generate --model "$fixture/base" --ids 0,270,27 --max-new-tokens 8)
expected=$(./meteora "${gen[@]}" 2>"$work/log") || fail "./meteora generate"
got=$(env HOME="$work/home" NUGET_PACKAGES="$work/none" LD_LIBRARY_PATH="$libtorch" "$work/tools/meteora" "${gen[@]}" 2>"$work/log") \
  || fail "the installed tool's generate"
[ "$got" = "$expected" ] || fail "the installed tool generated '$got', ./meteora '$expected'"

# 4. no libtorch: one line, exit 1
env HOME="$work/home" NUGET_PACKAGES="$work/none" LD_LIBRARY_PATH= "$work/tools/meteora" "${gen[@]}" >"$work/none.out" 2>"$work/none.err"
rc=$?
[ "$rc" -eq 1 ] || fail "without libtorch the tool exited $rc, not 1"
[ ! -s "$work/none.out" ] || fail "without libtorch the tool printed to stdout: $(head -1 "$work/none.out")"
[ "$(wc -l <"$work/none.err")" -eq 1 ] && grep -q '^error: no libtorch backend could be loaded (.*libtorch-cpu-linux-x64' "$work/none.err" \
  || fail "without libtorch: $(head -2 "$work/none.err")"

echo "packages: ok ($version; pack, sample from the feed, tool install + generate, missing-backend message; $(( $(date +%s) - start )) s)"
