#!/usr/bin/env bash
# Installs Garage 2.5.0 (the real S3 server the integration tests run against)
# into a fixed place outside the clone, so later runs skip the ~7 minute build.
set -euo pipefail
GARAGE_ROOT="${GARAGE_ROOT:-$HOME/.local/garage}"
bin="$GARAGE_ROOT/bin/garage"
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "2\.5\.0"; then
  echo "garage present: $bin"
  exit 0
fi
echo "installing garage 2.5.0 into $GARAGE_ROOT (takes several minutes)"
cargo install garage --locked --version 2.5.0 --root "$GARAGE_ROOT"
"$bin" --version
