#!/usr/bin/env bash
# Builds the origin-pull image without a registry or a Docker build: the
# release binary built here, a root filesystem made from this machine's
# files (rootfs.sh), then `docker import`. Needs a Docker engine only for
# the last step; without one it leaves the tarball.
#   docker/build-image.sh [TAG]     (default origin-pull:local)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-origin-pull:local}
cargo build --release --locked --bin origin-pull
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
docker/rootfs.sh target/release/origin-pull docker/origin-pull.yaml "$work/root"
tar -C "$work/root" -cf target/origin-pull-rootfs.tar .
echo "root filesystem: target/origin-pull-rootfs.tar"
if docker info >/dev/null 2>&1; then
  docker import \
    --change 'USER 65532:65532' \
    --change 'ENV TMPDIR=/tmp' \
    --change 'EXPOSE 8080 9090' \
    --change 'ENTRYPOINT ["/usr/local/bin/origin-pull"]' \
    --change 'CMD ["-c", "/etc/origin-pull/origin-pull.yaml"]' \
    target/origin-pull-rootfs.tar "$tag"
  echo "image: $tag"
else
  echo "no Docker engine here: import it elsewhere with docker import (see this script)"
fi
