#!/usr/bin/env bash
# Builds the library and the examples (release), then runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
echo
build/release/examples/race_counter
echo
build/release/examples/homework
