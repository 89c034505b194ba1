#!/usr/bin/env bash
# Publishes the NativeAOT edge agent for one runtime (default linux-x64) into artifacts/agent/<rid>/,
# with only that runtime's native libraries, and fails on any trim/AOT warning other than LiteDB's
# package-level summaries (see edge-agent/EdgeFleet.Agent.csproj).
# Usage: packaging/publish-agent.sh [linux-x64]
set -euo pipefail
rid="${1:-linux-x64}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/artifacts/agent/$rid"
log="$root/artifacts/agent/publish-$rid.log"

case "$rid" in
  linux-x64) ;;
  *) echo "publish-agent.sh: runtime '$rid' is not supported yet (linux-x64); arm64 cross-publishing is the packaging issue's work" >&2; exit 2 ;;
esac

if ! command -v clang >/dev/null; then
  echo "publish-agent.sh: NativeAOT needs clang and zlib; installing them" >&2
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y -q clang zlib1g-dev >/dev/null; else sudo apt-get install -y -q clang zlib1g-dev >/dev/null; fi
fi

rm -rf "$out"
mkdir -p "$out"
dotnet publish "$root/edge-agent/EdgeFleet.Agent.csproj" -c Release -r "$rid" -p:PublishAot=true \
  -o "$out" -nologo -clp:NoSummary 2>&1 | tee "$log"

# IL2104/IL3053 for LiteDB are suppressed in the project; anything else that looks like a trim/AOT warning fails.
if grep -E "warning (IL[0-9]{4}|AOT)" "$log"; then
  echo "publish-agent.sh: trim/AOT warnings above" >&2
  exit 1
fi
# The ONNX Runtime package also drops Windows DLLs and debug files into a Linux publish: keep only what runs here.
find "$out" -maxdepth 1 \( -name '*.dll' -o -name '*.pdb' -o -name '*.dbg' \) -delete
ls -l "$out"
size=$(stat -c %s "$out/edgefleet-agent")
echo "edgefleet-agent: $size bytes ($(( size / 1024 / 1024 )) MiB) without the ONNX Runtime library"
