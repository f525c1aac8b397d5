#!/usr/bin/env bash
# Builds and runs every test:
#   1. g++, RelWithDebInfo, -Werror: unit, golden, replay, header, link and
#      CMake-consumer tests, built for baseline x86-64; where the CPU has
#      AVX2, FMA and F16C, run-time dispatch must pick the AVX2 kernels
#      (PDROP_EXPECT_SIMD), and the unit tests run again with the portable
#      kernels forced (PDROP_SIMD=portable);
#   2. clang++, PDROP_SANITIZE=ON (AddressSanitizer + UBSan, no recovery),
#      -Werror: the same tests;
#   3. when the CPU has AVX2, FMA and F16C: clang++ -O2 -march=x86-64-v3
#      with the sanitizers, where the AVX2 kernels are the TU's own code
#      rather than a target attribute's.
#   3a. when the CPU has AVX-512 (x86-64-v4): g++ Release (-O3) -march=x86-64-v4, the
#      unit tests only: the AVX2 kernels built with EVEX's 32 ymm registers,
#      which give GQA tiles of another shape (pdrop/detail/simd.hpp).
#   3b. aarch64: g++ cross compiler (cmake/toolchains/aarch64-linux-gnu.cmake),
#      -O2 -DNDEBUG (build 1's code; without -g, which would make this
#      build a third slower), -Werror, each test program run under
#      qemu-aarch64: the same tests on a 64-bit Arm target (the portable
#      kernels, char unsigned, another libm), but the MPI one (see below).
# Each build also compiles every public header on its own. Then the Python
# reference (in .venv, from scripts/deps.sh):
#   4. every relative link of the Markdown files resolves;
#      reference/make_golden.py --check: the committed tests/golden is what
#      transformers' models write today; --twice: two runs, same bytes;
#      reference/test_reference.py: the generator's and dump.py's errors,
#      and dump.py on a saved checkpoint replayed by pdrop-replay.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)

run() {  # run NAME CXX CMAKE_ARGS...
  local name=$1 cxx=$2; shift 2
  local dir=build/test-$name
  echo "== $name: configure ($cxx)"
  cmake -S . -B "$dir" -DCMAKE_CXX_COMPILER="$cxx" -DPDROP_WERROR=ON \
        -DPDROP_BUILD_BENCH=OFF "$@" >/dev/null
  echo "== $name: build"
  cmake --build "$dir" -j"$jobs"
  echo "== $name: test"
  (cd "$dir" && ctest --output-on-failure -j"$jobs")
}

if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo; then
  best=avx2
else
  best=portable
fi

PDROP_EXPECT_SIMD=$best run gcc g++ -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "$best" = avx2 ]; then
  echo "== gcc: unit tests again, portable kernels forced (PDROP_SIMD=portable)"
  PDROP_SIMD=portable PDROP_EXPECT_SIMD=portable build/test-gcc/tests/pdrop_tests --gtest_brief=1
fi
PDROP_EXPECT_SIMD=$best run clang-sanitize clang++ -DCMAKE_BUILD_TYPE=Debug -DPDROP_SANITIZE=ON
if [ "$best" = avx2 ]; then
  PDROP_EXPECT_SIMD=avx2 \
    run clang-avx2 clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPDROP_SANITIZE=ON \
        -DCMAKE_CXX_FLAGS=-march=x86-64-v3
else
  echo "== clang-avx2: skipped (this CPU lacks AVX2/FMA/F16C)"
fi
if [ "$best" = avx2 ] && grep -qw avx512f /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo &&
   grep -qw avx512bw /proc/cpuinfo && grep -qw avx512dq /proc/cpuinfo && grep -qw avx512cd /proc/cpuinfo; then
  dir=build/test-gcc-v4
  echo "== gcc-v4: configure and build pdrop_tests (g++ -march=x86-64-v4)"
  # -Wno-maybe-uninitialized: g++ 12 warns inside its own avx512fintrin.h
  # (_mm512_undefined_ps, GCC bug 105593) where Eigen's AVX-512 GEMM, used by
  # the tests' reference models, inlines it.
  cmake -S . -B "$dir" -DCMAKE_CXX_COMPILER=g++ -DPDROP_WERROR=ON -DPDROP_BUILD_BENCH=OFF \
        -DPDROP_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_CXX_FLAGS="-march=x86-64-v4 -Wno-maybe-uninitialized" >/dev/null
  cmake --build "$dir" --target pdrop_tests -j"$jobs"
  echo "== gcc-v4: unit tests"
  PDROP_EXPECT_SIMD=avx2 "$dir/tests/pdrop_tests" --gtest_brief=1
else
  echo "== gcc-v4: skipped (this CPU lacks AVX-512 F/VL/BW/DQ/CD)"
fi
# mpi_tensor_parallel is off here: it would need Open MPI built for arm64
# and mpirun starting its ranks under qemu; the same pdrop calls are checked
# without MPI by pdrop_tests' TensorParallel* tests, which do run.
echo "== aarch64: mpi_tensor_parallel skipped (PDROP_WITH_MPI=OFF: no arm64 Open MPI under qemu;" \
     "TensorParallel* in pdrop_tests run instead)"
PDROP_EXPECT_SIMD=portable \
  run aarch64 aarch64-linux-gnu-g++ -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
      -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchains/aarch64-linux-gnu.cmake" -DPDROP_WITH_MPI=OFF

echo "== docs: links"
python3 scripts/check_links.py
python=${PDROP_VENV:-.venv}/bin/python
echo "== reference: committed golden cases against a fresh run"
"$python" reference/make_golden.py --check
"$python" reference/make_golden.py --twice --only llava/pyramid_astronaut,qwen2_vl/video_pyramid
echo "== reference: tests"
PDROP_REPLAY_EXE=build/test-gcc/examples/pdrop-replay "$python" reference/test_reference.py
