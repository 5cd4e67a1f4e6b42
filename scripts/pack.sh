#!/usr/bin/env bash
# Packs the library (Meteora), the server library (Meteora.Server) and the CLI tool (Meteora.Cli, command `meteora`)
# into a folder feed: .nupkg + .snupkg each. Packed against TorchSharp without libtorch (TorchBackend=external): the
# user picks libtorch (README "Packages"). Builds into bin-pack/ and obj-pack/, leaving the CPU build untouched.
#   [REPOSITORY_URL=https://…] bash scripts/pack.sh OUT_DIR [VERSION_SUFFIX]     → prints the packages' version on stdout
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: scripts/pack.sh OUT_DIR [VERSION_SUFFIX]}"
suffix="${2:-}"
bash scripts/setup.sh >&2
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
mkdir -p "$out"
out="$(cd "$out" && pwd)"
args=(-c Release -nologo -v quiet -clp:ErrorsOnly --disable-build-servers -p:MeteoraPack=true -p:TorchBackend=external -o "$out")
[ -n "$suffix" ] && args+=(--version-suffix "$suffix")
# The repository URL (package metadata and SourceLink) comes from the clone's origin when that is an http(s) URL;
# REPOSITORY_URL sets it explicitly (e.g. when packing from a mirror or a local clone).
[ -n "${REPOSITORY_URL:-}" ] && args+=(-p:RepositoryUrl="$REPOSITORY_URL" -p:PackageProjectUrl="$REPOSITORY_URL")
for project in src/Meteora/Meteora.csproj src/Meteora.Server/Meteora.Server.csproj src/Meteora.Cli/Meteora.Cli.csproj; do
  echo "pack: $project" >&2
  if ! dotnet pack "$project" "${args[@]}" >&2; then echo "pack: dotnet pack $project failed" >&2; exit 1; fi
done
version=$(dotnet msbuild src/Meteora/Meteora.csproj -nologo -getProperty:PackageVersion -p:MeteoraPack=true ${suffix:+-p:VersionSuffix=$suffix})
ls "$out"/Meteora*."$version".nupkg >/dev/null || { echo "pack: no Meteora*.$version.nupkg in $out" >&2; exit 1; }
echo "$version"
