#!/usr/bin/env bash
# Line coverage (gcov) of the CUDA backend's host code and launchers
# (kernels/cuda/*.cpp, kernels/cuda/*.cu) when it runs on the CPU stand-ins
# (docs/gpu.md, "CPU stand-ins"): builds DIR (default build-standin-cov) with
# -DMDPS_CUDA_STANDIN=ON -DMDPS_STANDIN_COVERAGE=ON, runs test_cuda_backend,
# test_cuda_standin and one `mdps eval --device cuda` of the demo data, then
# prints the covered fraction per file and every line never executed
# (DIR/coverage/*.gcov hold the annotated sources). Not part of CI: the
# numbers are recorded in docs/gpu.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${1:-build-standin-cov}
JOBS=${JOBS:-2}
cmake -S . -B "$DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMDPS_CUDA=OFF -DMDPS_CUDA_STANDIN=ON \
  -DMDPS_STANDIN_COVERAGE=ON >/dev/null
cmake --build "$DIR" -j"$JOBS" --target mdps test_cuda_backend test_cuda_standin
OBJ="$DIR/CMakeFiles/mdps_cuda.dir/kernels/cuda"
find "$OBJ" -name '*.gcda' -delete
"$DIR/tests/test_cuda_standin" >/dev/null 2>&1
"$DIR/tests/test_cuda_backend" >"$DIR/coverage-test_cuda_backend.log" 2>&1 || { echo "test_cuda_backend failed: $DIR/coverage-test_cuda_backend.log"; exit 1; }
D="$DIR/coverage-eval"
rm -rf "$D"
"$DIR/mdps" demo --quick --steps 20 --out "$D/demo" >/dev/null 2>&1
"$DIR/mdps" eval --model "$D/demo/model.safetensors" --dataset "$D/demo/data/demo" --out "$D/cuda" --device cuda \
  --round1-t 200 --t-start 400 --skip 100 --limit 1 --blur-sigma 1 --blur-kernel 9 --no-panels --quiet \
  --trace "$D/trace.json" >/dev/null 2>&1
mkdir -p "$DIR/coverage"
cd "$DIR/coverage"
rm -f ./*.gcov
total=0 covered=0
for src in ../../kernels/cuda/*.cpp ../../kernels/cuda/*.cu; do
  base=$(basename "$src")
  gcov -o "../CMakeFiles/mdps_cuda.dir/kernels/cuda/$base.o" "../../kernels/cuda/$base" >/dev/null 2>&1 || true
  g="$base.gcov"
  [ -f "$g" ] || { echo "$base: no coverage data"; continue; }
  n=$(grep -cE '^ *([0-9]+\*?|#####):' "$g" || true)
  u=$(grep -cE '^ *#####:' "$g" || true)
  total=$((total + n)); covered=$((covered + n - u))
  printf '%-26s %4d/%4d lines\n' "$base" $((n - u)) "$n"
  grep -E '^ *#####:' "$g" | sed "s/^ *#####: */    $base:/" || true
done
echo "total: $covered/$total lines ($((100 * covered / (total > 0 ? total : 1)))%)"
