#!/usr/bin/env bash
# Installs a built concur into a scratch prefix, then builds and runs a small
# program against it twice: with pkg-config and with CMake's find_package.
# Usage: check.sh <build dir> <source dir>
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
work="$build/install-check"
rm -rf "$work"
mkdir -p "$work"
prefix="$work/prefix"

cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(find "$prefix" -name concur.pc -print -quit)
libdir=$(dirname "$(dirname "$pc")")

echo "== pkg-config"
export PKG_CONFIG_PATH="$(dirname "$pc")"
cc -std=c11 -Wall -Wextra -Werror "$src/tests/install/consumer.c" \
  $(pkg-config --cflags --libs concur) -o "$work/consumer_pc"
LD_LIBRARY_PATH="$libdir" "$work/consumer_pc"

echo "== find_package"
cmake -S "$src/tests/install/cmake" -B "$work/cmake" -G Ninja \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cmake" >/dev/null
LD_LIBRARY_PATH="$libdir" "$work/cmake/consumer_shared"
"$work/cmake/consumer_static"
rm -rf "$work"
