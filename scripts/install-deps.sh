#!/usr/bin/env bash
# Installs the Debian 12 packages concur needs, only those that are missing.
#   scripts/install-deps.sh          what building, testing and the demo need
#   scripts/install-deps.sh --bench  also the peers the benchmarks compare with
set -euo pipefail

packages=(build-essential cmake ninja-build pkg-config check libsubunit-dev
  clang clang-format libclang-rt-14-dev faketime libfaketime)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(libglib2.0-dev libck-dev libconcurrentqueue-dev g++ libtbb-dev
    cthreadpool-dev libpthreadpool-dev python3)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=()
[[ $(id -u) -ne 0 ]] && sudo=(sudo)
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
