#!/usr/bin/env bash
# Makes a fresh Debian 12 machine ready to build and run MeteoRA for .NET. Idempotent: every step checks first.
#  1. TorchSharp 0.107's native code needs libstdc++ from GCC >= 13 (GLIBCXX_3.4.32); Debian 12 ships GCC 12.
#     We install libstdc++6 from Debian 13 (trixie); apt brings the libc6 2.41 it depends on.
#  2. The .NET 10 SDK must be on PATH (it is on the project's machines; we say so clearly if it is not).
#  3. Restore and build the solution (incremental; quiet unless something fails).
#  4. Optional, never fatal: NVRTC (Debian 12 non-free's libnvrtc, CUDA 11.8) unpacked into .cache/nvrtc — not
#     installed — so the tests can compile the CUDA routing kernel on a machine without CUDA. Without it those
#     tests are skipped with their reason. METEORA_SKIP_NVRTC=1 skips this step.
#  5. Optional, never fatal: Debian's chromium for the routing page's browser test (METEORA_SKIP_CHROMIUM=1 skips).
set -euo pipefail
cd "$(dirname "$0")/.."

# The Debian archive this machine already uses (its own mirror or proxy), from its apt sources: the first URI of a
# deb822 stanza (sources.list.d/*.sources) or one-line entry (sources.list, *.list) whose suite is bookworm. No host
# name is written here, so machines behind a local mirror work unchanged.
debian_mirror() {
  local f
  {
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      awk 'BEGIN{RS=""} /(^|\n)Types:[^\n]*deb/ && /(^|\n)Suites:[^\n]*(^|[ \t])bookworm([ \t\n]|$)/ {
        n = split($0, lines, "\n"); for (i = 1; i <= n; i++) if (lines[i] ~ /^URIs:/) { split(lines[i], u, /[ \t]+/); print u[2] } }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) while ($i !~ /\]$/) i++; if ($i ~ /^\[/ || $i ~ /\]$/) i++; if ($(i+1) == "bookworm") print $i }' "$f"
    done
  } | head -1 || true    # (head closing the pipe early is not a failure; finding nothing is the callers' to report)
}

LIBSTDCXX=/usr/lib/x86_64-linux-gnu/libstdc++.so.6
need_glibcxx() { ! grep -qa GLIBCXX_3.4.32 "$LIBSTDCXX" 2>/dev/null; }

if need_glibcxx; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: $LIBSTDCXX lacks GLIBCXX_3.4.32 (TorchSharp needs GCC >= 13's libstdc++); run scripts/setup.sh as root once" >&2
    exit 1
  fi
  echo "setup: installing libstdc++6 from Debian 13 (trixie) for TorchSharp ..." >&2
  # The trixie source is there only for this one install, so later upgrades stay on Debian 12.
  mirror=$(debian_mirror)
  if [ -z "$mirror" ]; then
    echo "setup: no Debian bookworm source in /etc/apt/sources.list or sources.list.d to take the archive mirror from" >&2
    exit 1
  fi
  src=/etc/apt/sources.list.d/meteora-trixie.sources
  cat > "$src" <<SRC
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  export DEBIAN_FRONTEND=noninteractive
  status=0
  { apt-get update -qq && apt-get install -y -qq libstdc++6/trixie; } >/tmp/meteora-setup-apt.log 2>&1 || status=$?
  rm -f "$src"
  apt-get update -qq >/dev/null 2>&1 || true
  if [ "$status" != 0 ]; then
    echo "setup: apt-get install libstdc++6/trixie failed (exit $status); see /tmp/meteora-setup-apt.log" >&2
    exit 1
  fi
  if need_glibcxx; then
    echo "setup: libstdc++6 from trixie did not bring GLIBCXX_3.4.32 ($LIBSTDCXX)" >&2
    exit 1
  fi
fi

if ! command -v dotnet >/dev/null 2>&1; then
  echo "setup: the .NET 10 SDK (dotnet) is not on PATH; install it from Microsoft's Debian packages" >&2
  exit 1
fi
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# Build only when a source or project file is newer than the CLI (dotnet build itself takes seconds when idle).
cli=src/Meteora.Cli/bin/Release/net10.0/Meteora.Cli.dll
stale() {
  [ ! -f "$cli" ] || [ -n "$(find src tests Directory.Build.props Meteora.slnx \( -name '*.cs' -o -name '*.csproj' -o -name '*.props' -o -name '*.slnx' \) -newer "$cli" -print -quit 2>/dev/null)" ]
}
if [ "${METEORA_SKIP_BUILD:-0}" != 1 ] && stale; then
  echo "setup: building (dotnet build -c Release) ..." >&2
  if ! dotnet build Meteora.slnx -c Release -nologo -v quiet -clp:ErrorsOnly >/tmp/meteora-build.log 2>&1; then
    cat /tmp/meteora-build.log >&2
    echo "setup: build failed" >&2
    exit 1
  fi
  touch "$cli"
fi

nvrtc_dir=.cache/nvrtc
nvrtc_mirror=$(debian_mirror)
if [ "${METEORA_SKIP_NVRTC:-0}" != 1 ] && [ ! -e "$nvrtc_dir/usr/lib/x86_64-linux-gnu/libnvrtc.so.11.2" ] && [ "$(id -u)" = 0 ] && [ -z "$nvrtc_mirror" ]; then
  echo "setup: no Debian bookworm source in the apt configuration to fetch NVRTC from; the kernel compile tests will be skipped" >&2
elif [ "${METEORA_SKIP_NVRTC:-0}" != 1 ] && [ ! -e "$nvrtc_dir/usr/lib/x86_64-linux-gnu/libnvrtc.so.11.2" ] && [ "$(id -u)" = 0 ]; then
  echo "setup: fetching NVRTC (libnvrtc11.2 from Debian non-free) into $nvrtc_dir for the kernel compile tests ..." >&2
  src=/etc/apt/sources.list.d/meteora-nonfree.sources
  lists=$(mktemp -d /tmp/meteora-apt-lists.XXXXXX)
  cat > "$src" <<SRC
Types: deb
URIs: $nvrtc_mirror
Suites: bookworm
Components: non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  debs=$(mktemp -d /tmp/meteora-nvrtc.XXXXXX)
  # A private lists folder: the machine's own apt state is left as it was.
  if (apt-get -o Dir::State::Lists="$lists" update -qq && cd "$debs" \
      && apt-get -o Dir::State::Lists="$lists" download -qq libnvrtc11.2 libnvrtc-builtins11.8) >/tmp/meteora-setup-nvrtc.log 2>&1; then
    mkdir -p "$nvrtc_dir"
    for f in "$debs"/*.deb; do dpkg -x "$f" "$nvrtc_dir"; done
  else
    echo "setup: could not fetch NVRTC (see /tmp/meteora-setup-nvrtc.log); the kernel compile tests will be skipped" >&2
  fi
  rm -f "$src"; rm -rf "$debs" "$lists"
fi


# unzip: scripts/check-packages.sh (run by ./test.sh) reads the packed .nupkg files with it.
if ! command -v unzip >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "setup: installing unzip (Debian) for the package checks ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq unzip || { apt-get update -qq && apt-get install -y -qq unzip; }; } >/tmp/meteora-setup-unzip.log 2>&1 \
    || echo "setup: could not install unzip (see /tmp/meteora-setup-unzip.log); the package checks will fail" >&2
fi

# 5. Optional, never fatal: Debian's chromium, for the test that loads `meteora serve`'s routing page in a real
#    (headless) browser. Without it that test is skipped with its reason. METEORA_SKIP_CHROMIUM=1 skips this step.
if [ "${METEORA_SKIP_CHROMIUM:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "setup: installing chromium (Debian) for the routing page's browser test ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get install -y -qq --no-install-recommends chromium || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }; } \
      >/tmp/meteora-setup-chromium.log 2>&1; then
    echo "setup: could not install chromium (see /tmp/meteora-setup-chromium.log); the routing page's browser test will be skipped" >&2
  fi
fi
