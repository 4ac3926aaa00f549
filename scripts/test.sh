#!/usr/bin/env bash
# The project's test command: installs what the build and the tests need
# when missing (cmake for the build, python3 and curl for the quickstart
# test, Garage into $HOME/.local/garage, outside the clone), then runs
# every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/need.sh
need cmake # pingora-core's flate2 uses zlib-ng, which builds with cmake
need_rust
need python3
need curl
scripts/install-garage.sh
cargo test --all-targets "$@"
