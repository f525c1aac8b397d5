#!/usr/bin/env bash
# Builds pdrop's tools (Release, -march=native) and runs the demo:
# PyramidDrop on a LLaVA-NeXT-shaped prompt (2880 image tokens) through a
# 16-layer, width-512 LLaMA-style host, dense vs pruned. Prints the pyramid,
# time per stage, output drift, the KV cache each run leaves (bytes, checked
# against pdrop::kv_cache_bytes), the time to decode 16 tokens after each
# prefill (best of 3), and the measured vs predicted prefill speedup; writes
# pdrop-demo.svg here. Extra arguments go to pdrop-demo (e.g. --decode 64).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
build=${PDROP_BUILD_DIR:-build/release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPDROP_NATIVE=ON \
      -DPDROP_BUILD_TESTS=OFF -DPDROP_BUILD_BENCH=OFF >/dev/null
log="$build/demo-build.log"
cmake --build "$build" -j"$(nproc)" --target pdrop-demo pdrop-replay pdrop-flops >"$log" 2>&1 ||
  { cat "$log"; exit 1; }
"$build/examples/pdrop-demo" --svg pdrop-demo.svg "$@"
