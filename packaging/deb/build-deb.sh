#!/usr/bin/env bash
# Builds the edgefleet-agent .deb from the NativeAOT publish in artifacts/agent/<rid>/ (run
# packaging/publish-agent.sh first) into artifacts/deb/. Needs dpkg-deb only.
# Usage: packaging/deb/build-deb.sh [linux-x64] [version]
set -euo pipefail
rid="${1:-linux-x64}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
version="${2:-$(sed -n 's|.*<Version>\(.*\)</Version>.*|\1|p' "$root/Directory.Build.props")}"
case "$rid" in
  linux-x64) arch=amd64 ;;
  linux-arm64) arch=arm64 ;;
  *) echo "build-deb.sh: unknown runtime '$rid'" >&2; exit 2 ;;
esac
publish="$root/artifacts/agent/$rid"
[ -x "$publish/edgefleet-agent" ] || { echo "build-deb.sh: no agent in $publish; run packaging/publish-agent.sh $rid" >&2; exit 1; }
here="$root/packaging/deb"
stage="$root/artifacts/deb/stage-$arch"
out="$root/artifacts/deb/edgefleet-agent_${version}_${arch}.deb"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"

# The binary and the native libraries of this runtime only, in a private directory.
install -D -m 0755 "$publish/edgefleet-agent" "$stage/usr/lib/edgefleet-agent/edgefleet-agent"
for lib in "$publish"/*.so; do install -m 0644 "$lib" "$stage/usr/lib/edgefleet-agent/"; done
mkdir -p "$stage/usr/bin"
ln -s ../lib/edgefleet-agent/edgefleet-agent "$stage/usr/bin/edgefleet-agent"

install -D -m 0644 "$root/packaging/systemd/edgefleet-agent.service" "$stage/lib/systemd/system/edgefleet-agent.service"
install -D -m 0644 "$here/sysusers.conf" "$stage/usr/lib/sysusers.d/edgefleet-agent.conf"
install -D -m 0644 "$here/tmpfiles.conf" "$stage/usr/lib/tmpfiles.d/edgefleet-agent.conf"
install -D -m 0644 "$here/agent.json" "$stage/etc/edgefleet/agent.json"
for profile in "$root"/hardware-profiles/*.json; do install -D -m 0644 "$profile" "$stage/usr/share/edgefleet/hardware-profiles/$(basename "$profile")"; done
install -D -m 0644 "$here/copyright" "$stage/usr/share/doc/edgefleet-agent/copyright"
install -D -m 0644 "$root/docs/operations.md" "$stage/usr/share/doc/edgefleet-agent/operations.md"
sed "s/@VERSION@/$version/" "$here/changelog" | gzip -9n > "$stage/usr/share/doc/edgefleet-agent/changelog.gz"
chmod 0644 "$stage/usr/share/doc/edgefleet-agent/changelog.gz"
mkdir -p "$stage/usr/share/man/man1"
gzip -9n < "$here/edgefleet-agent.1" > "$stage/usr/share/man/man1/edgefleet-agent.1.gz"
chmod 0644 "$stage/usr/share/man/man1/edgefleet-agent.1.gz"
install -D -m 0644 "$here/lintian-overrides" "$stage/usr/share/lintian/overrides/edgefleet-agent"

for script in postinst prerm postrm; do install -m 0755 "$here/$script" "$stage/DEBIAN/$script"; done
echo /etc/edgefleet/agent.json > "$stage/DEBIAN/conffiles"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" "$here/control" > "$stage/DEBIAN/control"

dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "$out"
