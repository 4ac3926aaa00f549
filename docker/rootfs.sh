#!/usr/bin/env bash
# Makes a minimal root filesystem for origin-pull from this machine's own
# files: the binary, the shared libraries it links (ldd), the CA bundle,
# a non-root user, /tmp, and the config at /etc/origin-pull/origin-pull.yaml.
# Nothing is downloaded. Used by build-image.sh (docker import) and by
# tests/container.rs (runs the binary chrooted in it).
#   docker/rootfs.sh BINARY CONFIG OUT_DIR
set -euo pipefail
bin=$1 config=$2 out=$3
mkdir -p "$out"/{usr/local/bin,etc/origin-pull,etc/ssl/certs,tmp}
chmod 1777 "$out/tmp"
install -m 0755 "$bin" "$out/usr/local/bin/origin-pull"
install -m 0644 "$config" "$out/etc/origin-pull/origin-pull.yaml"
# Every library the binary loads, at the same path (and the loader).
ldd "$bin" | grep -o '/[^ ]*' | while read -r lib; do
  mkdir -p "$out$(dirname "$lib")"
  cp -L "$lib" "$out$lib"
done
bundle=/etc/ssl/certs/ca-certificates.crt
[ -f "$bundle" ] || { echo "no CA bundle at $bundle (apt-get install ca-certificates)" >&2; exit 1; }
cp -L "$bundle" "$out$bundle"
echo 'root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$out/etc/passwd"
echo 'root:x:0:
nonroot:x:65532:' >"$out/etc/group"
echo 'hosts: files dns' >"$out/etc/nsswitch.conf"
echo '127.0.0.1 localhost' >"$out/etc/hosts"
