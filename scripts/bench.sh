#!/usr/bin/env bash
# Builds pdrop-bench (Release; -march=native unless PDROP_BENCH_NATIVE=OFF is
# passed in PDROP_BENCH_CMAKE_ARGS), runs every benchmark with interleaved
# repetitions, runs the one-drop step side by side with PyTorch when
# the project's .venv (scripts/deps.sh; torch pinned in reference/requirements.txt)
# can import torch, and rewrites the table in
# bench/README.md from the JSON results (bench/table.py).
#
# Environment:
#   PDROP_BENCH_BUILD       build folder (default build/bench)
#   PDROP_BENCH_REPS        repetitions per benchmark (default 5)
#   PDROP_BENCH_FILTER      --benchmark_filter (default: all)
#   PDROP_BENCH_CMAKE_ARGS  extra CMake arguments
#   PDROP_BENCH_NO_README=1 print the table instead of rewriting the README
#   TORCH_PYTHON            Python with PyTorch (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh

build=${PDROP_BENCH_BUILD:-build/bench}
reps=${PDROP_BENCH_REPS:-5}
filter=${PDROP_BENCH_FILTER:-.}
torch_python=${TORCH_PYTHON:-${PDROP_VENV:-.venv}/bin/python}
out=$build/results
# shellcheck disable=SC2086
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPDROP_BUILD_BENCH=ON \
      -DPDROP_BUILD_TESTS=OFF -DPDROP_BUILD_EXAMPLES=OFF ${PDROP_BENCH_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" --target pdrop-bench -j"$(nproc)"
bench=$build/bench/pdrop-bench
mkdir -p "$out"
rm -f "$out"/*.json "$out"/torch.jsonl

common=(--benchmark_repetitions="$reps" --benchmark_enable_random_interleaving=true
        --benchmark_report_aggregates_only=true --benchmark_min_time=0.2)
echo "== pdrop-bench (all, $reps repetitions)"
"$bench" "${common[@]}" --benchmark_filter="$filter" \
         --benchmark_out="$out/all.json" --benchmark_out_format=json

torch_args=()
if "$torch_python" -c 'import torch' 2>/dev/null; then
  echo "== one drop, side by side with PyTorch ($("$torch_python" -c 'import torch; print(torch.__version__)'))"
  for round in 1 2 3; do
    "$bench" "${common[@]}" --benchmark_filter='^rank_and_drop' \
             --benchmark_out="$out/drop_$round.json" --benchmark_out_format=json >/dev/null
    for variant in reference gather; do
      "$torch_python" bench/torch_rank_and_drop.py --variant "$variant" >>"$out/torch.jsonl"
    done
    "$torch_python" bench/torch_rank_and_drop.py --variant reference --threads 2 >>"$out/torch.jsonl"
  done
  torch_args=(--torch "$out/torch.jsonl")
else
  echo "== PyTorch not found ($torch_python): no comparison (scripts/deps.sh installs it into .venv)"
fi

readme_args=(--readme bench/README.md)
if [ -n "${PDROP_BENCH_NO_README:-}" ]; then readme_args=(); fi
python3 bench/table.py "$out"/*.json "${torch_args[@]}" "${readme_args[@]}"
echo "== results in $out${PDROP_BENCH_NO_README:+}; table: bench/README.md"
