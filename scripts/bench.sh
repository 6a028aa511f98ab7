#!/usr/bin/env bash
# Builds and runs every comparative benchmark (bench/), first on the futex
# build, then the sync benchmark on the condvar parking fallback, for the
# record. Arguments (such as --quick) are passed to every benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --bench

for preset in bench bench-condvar; do
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset"
done

for b in build/bench/bench/*/bench_*; do
  [[ -x "$b" ]] || continue
  printf '\n## %s\n\n' "${b##*/}"
  "$b" "$@"
done
printf '\n## bench_sync on the condvar fallback\n\n'
build/bench-condvar/bench/sync/bench_sync "$@"
