#!/usr/bin/env bash
# The project's test command: installs Garage when missing (into
# $HOME/.local/garage, outside the clone), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-garage.sh
cargo test --all-targets "$@"
