#!/usr/bin/env bash
# Builds and runs every test: formatting, then the suite plain with -Werror
# (gcc), under ASan+UBSan, under TSan, on the condvar parking fallback, and a
# clang build with -Werror. Stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

jobs=$(nproc)
step() { printf '\n==== %s ====\n' "$*"; }

step "clang-format"
mapfile -t sources < <(git ls-files '*.c' '*.h' '*.cpp' 2>/dev/null || find . -name '*.[ch]' -not -path './build/*')
clang-format --dry-run --Werror "${sources[@]}"
echo "${#sources[@]} files formatted"

for preset in ci asan tsan condvar; do
  step "build and test: $preset"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset" -j "$jobs"
done

step "build: clang -Werror"
cmake --preset clang >/dev/null
cmake --build --preset clang -j "$jobs"
echo "clang build clean"
