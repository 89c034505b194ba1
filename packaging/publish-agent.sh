#!/usr/bin/env bash
# Publishes the NativeAOT edge agent for one runtime (default linux-x64) into artifacts/agent/<rid>/,
# with only that runtime's native libraries, and fails on any trim/AOT warning other than LiteDB's
# package-level summaries (see edge-agent/EdgeFleet.Agent.csproj). linux-arm64 is cross-compiled from
# x64 with Debian's clang, lld and the aarch64 cross libc, installed here when missing.
# Usage: packaging/publish-agent.sh [linux-x64|linux-arm64]
set -euo pipefail
rid="${1:-linux-x64}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/artifacts/agent/$rid"
log="$root/artifacts/agent/publish-$rid.log"

apt_install() {
  echo "publish-agent.sh: installing $*" >&2
  local sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  # A fresh machine has no package lists yet: update them once before the first install.
  if [ -z "${apt_updated:-}" ]; then
    $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@" >/dev/null
}
command -v clang >/dev/null || apt_install clang zlib1g-dev

extra=()
case "$rid" in
  linux-x64) ;;
  linux-arm64)
    [ -e /usr/aarch64-linux-gnu/lib/libc.so ] && command -v ld.lld >/dev/null && command -v aarch64-linux-gnu-objcopy >/dev/null \
      || apt_install lld gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu
    # A sysroot of links to the cross libc. Its linker scripts (libc.so) name absolute paths such as
    # /usr/aarch64-linux-gnu/lib/libc.so.6, which lld looks up inside the sysroot: so the sysroot has that
    # path too, besides the multiarch layout clang searches (usr/lib/aarch64-linux-gnu, usr/lib/gcc/...).
    sysroot="$root/artifacts/sysroot-arm64"
    rm -rf "$sysroot"
    mkdir -p "$sysroot/usr/lib/gcc" "$sysroot/lib"
    ln -s /usr/aarch64-linux-gnu "$sysroot/usr/aarch64-linux-gnu"
    ln -s /usr/aarch64-linux-gnu/lib "$sysroot/usr/lib/aarch64-linux-gnu"
    ln -s /usr/aarch64-linux-gnu/lib "$sysroot/lib/aarch64-linux-gnu"
    ln -s /usr/lib/gcc-cross/aarch64-linux-gnu "$sysroot/usr/lib/gcc/aarch64-linux-gnu"
    ln -s /usr/aarch64-linux-gnu/include "$sysroot/usr/include"
    extra=(-p:SysRoot="$sysroot" -p:LinkerFlavor=lld -p:ObjCopyName=aarch64-linux-gnu-objcopy)
    ;;
  *) echo "publish-agent.sh: runtime '$rid' is not supported (linux-x64, linux-arm64)" >&2; exit 2 ;;
esac

rm -rf "$out"
mkdir -p "$out"
dotnet publish "$root/edge-agent/EdgeFleet.Agent.csproj" -c Release -r "$rid" -p:PublishAot=true "${extra[@]}" \
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
