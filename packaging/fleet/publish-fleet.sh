#!/usr/bin/env bash
# Publishes the fleet service self-contained (no .NET runtime needed on the server) into
# artifacts/fleet/<rid>/. Usage: packaging/fleet/publish-fleet.sh [linux-x64|linux-arm64]
set -euo pipefail
rid="${1:-linux-x64}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/artifacts/fleet/$rid"
case "$rid" in
  linux-x64|linux-arm64) ;;
  *) echo "publish-fleet.sh: runtime '$rid' is not supported (linux-x64, linux-arm64)" >&2; exit 2 ;;
esac
rm -rf "$out"
dotnet publish "$root/fleet-service/EdgeFleet.Fleet/EdgeFleet.Fleet.csproj" -c Release -r "$rid" --self-contained \
  -o "$out" -nologo -clp:NoSummary -v:q
find "$out" -maxdepth 1 -name '*.pdb' -delete
echo "$out"
