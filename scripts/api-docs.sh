#!/usr/bin/env bash
# API reference from the XML doc comments (docfx, a .NET tool installed into .cache/docfx on first use):
# docs/api/index.md (the entry points) + every public type of Meteora and Meteora.Server → artifacts/api-docs/site/.
# An unresolved link on the entry-points page is an error, so the page stays true to the code.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
docfx=.cache/docfx/docfx
[ -x "$docfx" ] || dotnet tool install docfx --version 2.81.0 --tool-path .cache/docfx >&2
rm -rf artifacts/api-docs
"$docfx" docs/api/docfx.json --warningsAsErrors >&2
echo "artifacts/api-docs/site/index.html"
