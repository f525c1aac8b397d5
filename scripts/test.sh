#!/usr/bin/env bash
# Builds and runs every test, twice:
#   1. g++, RelWithDebInfo, -Werror: unit, golden, replay, header and
#      CMake-consumer tests;
#   2. clang++, PDROP_SANITIZE=ON (AddressSanitizer + UBSan, no recovery),
#      -Werror: the same tests.
# Each build also compiles every public header on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)
golden_args=()
if [ -n "${CI:-}" ]; then golden_args=(-DPDROP_REQUIRE_GOLDEN=ON); fi

run() {  # run NAME CXX CMAKE_ARGS...
  local name=$1 cxx=$2; shift 2
  local dir=build/test-$name
  echo "== $name: configure ($cxx)"
  cmake -S . -B "$dir" -DCMAKE_CXX_COMPILER="$cxx" -DPDROP_WERROR=ON \
        -DPDROP_BUILD_BENCH=OFF "${golden_args[@]}" "$@" >/dev/null
  echo "== $name: build"
  cmake --build "$dir" -j"$jobs"
  echo "== $name: test"
  (cd "$dir" && ctest --output-on-failure -j"$jobs")
}

run gcc g++ -DCMAKE_BUILD_TYPE=RelWithDebInfo
run clang-sanitize clang++ -DCMAKE_BUILD_TYPE=Debug -DPDROP_SANITIZE=ON
