#!/usr/bin/env bash
# Builds pdrop's tools (Release) and runs the demo: the replay tool on the
# LLaVA-NeXT-sized golden case (32 query heads over 8 kv heads, 2940 tokens,
# 2880 image tokens, keep 1440), then checks its output against the golden
# answer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
build=${PDROP_BUILD_DIR:-build/release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPDROP_BUILD_TESTS=OFF \
      -DPDROP_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target pdrop-replay
golden=${PDROP_GOLDEN_DIR:-../shared/golden}
case_dir="$golden/score_llava_next"
out="$build/demo-out/score_llava_next"
rm -rf "$out"
start=$(date +%s%N)
"$build/examples/pdrop-replay" score "$case_dir" "$out"
end=$(date +%s%N)
echo "pdrop-replay score $case_dir -> $out ($(( (end - start) / 1000000 )) ms incl. reading 12 MB of K)"
if cmp -s <(tail -c +129 "$out/kept.npy") <(tail -c +129 "$case_dir/kept.npy"); then
  echo "kept tokens: identical to the reference (1440 of 2880 image tokens)"
else
  echo "kept tokens: DIFFER from the reference" >&2
  exit 1
fi
