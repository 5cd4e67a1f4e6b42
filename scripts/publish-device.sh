#!/usr/bin/env bash
# Publishes the CLI self-contained for linux-x64 against an external libtorch (the GPU machines' PyTorch) and
# packs it with the test fixture into device/ (git-ignored), ready to be carried to a device run.
# On the device:  tar xzf device/meteora.tar.gz -C /tmp && source scripts/device-env.sh && /tmp/meteora/Meteora.Cli …
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rm -rf device/publish && mkdir -p device
dotnet publish src/Meteora.Cli/Meteora.Cli.csproj -c Release -r linux-x64 --self-contained \
  -p:TorchBackend=external -o device/publish/meteora -nologo -v quiet >&2
rm -f device/publish/meteora/*.pdb
mkdir -p device/publish/meteora/fixtures
cp -r ../shared/fixtures/tiny-llama3 device/publish/meteora/fixtures/
tar czf device/meteora.tar.gz -C device/publish meteora
rm -rf device/publish
ls -la device/meteora.tar.gz >&2
