#!/usr/bin/env bash
# Everything docs/gpu.md asks a GPU owner to report, in one run: builds the
# CUDA tree, runs the CUDA test suites, the sanitizers on the device tests,
# every kernel playground program and the engine benchmarks (fp32, tf32,
# bf16, and bf16 without cuDNN's fused attention), each step with its own
# time limit, and writes one log per step plus summary.txt into the report
# directory. A failing step is recorded and the run goes on.
#   tools/scripts/gpu_report.sh [REPORT_DIR]        (default: gpu-report)
# Environment: BUILD_DIR (build-cuda), JOBS (all cores), PEAK_GBS (the
# device's memory bandwidth in GB/s for the playground, e.g. 3350 for an H100
# SXM, 4800 for an H200), QUICK=1 (skips the sanitizers and the 256x256
# sampler: a few minutes instead of tens), CUDA_ARCHS (CMAKE_CUDA_ARCHITECTURES).
set -uo pipefail
cd "$(dirname "$0")/../.."
REPORT=${1:-gpu-report}
BUILD=${BUILD_DIR:-build-cuda}
JOBS=${JOBS:-$(nproc)}
PEAK_GBS=${PEAK_GBS:-0}
mkdir -p "$REPORT"
REPORT=$(cd "$REPORT" && pwd)
summary="$REPORT/summary.txt"
: >"$summary"

step() {  # step NAME LIMIT_S COMMAND...: output in REPORT/NAME.log, one summary line
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  echo "=== [$name] (limit ${limit}s)"
  timeout --foreground "$limit" "$@" >"$REPORT/$name.log" 2>&1
  local rc=$?
  local line="$name: rc=$rc, $(($(date +%s) - t0))s"
  [ $rc -eq 124 ] && line="$line (timed out)"
  echo "$line" | tee -a "$summary"
  tail -n 3 "$REPORT/$name.log" | sed 's/^/    /'
  return $rc
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (modified)')"
  echo "host: $(uname -srm), $(nproc) cores"
} | tee -a "$summary"
step machine 60 bash -c 'nvidia-smi -L; nvidia-smi; nvcc --version; grep -h "define CUDNN_M" /usr/include/cudnn_version*.h /usr/local/include/cudnn_version*.h /usr/local/cuda/include/cudnn_version*.h 2>/dev/null'

arch_flag=()
[ -n "${CUDA_ARCHS:-}" ] && arch_flag=(-DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCHS")
step configure 300 cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMDPS_CUDA=ON \
  -DMDPS_BUILD_TESTS=ON "${arch_flag[@]}" || { echo "configure failed: see $REPORT/configure.log"; exit 1; }
step build 1800 cmake --build "$BUILD" -j"$JOBS" || { echo "build failed: see $REPORT/build.log"; exit 1; }

# The device tests: 77 (skipped) means no device was found, which is a
# finding too (driver, visibility), not a pass.
step test-cuda 900 ctest --test-dir "$BUILD" --output-on-failure -R cuda
step test-cuda-backend-verbose 600 "$BUILD/tests/test_cuda_backend" --duration=true
grep -q "test_cuda_backend (Skipped)" "$REPORT/test-cuda.log" &&
  echo "test_cuda_backend SKIPPED: the tests saw no CUDA device (see test-cuda-backend-verbose.log)" | tee -a "$summary"
if [ -z "${QUICK:-}" ] && command -v compute-sanitizer >/dev/null; then
  step memcheck 1200 compute-sanitizer --tool memcheck --error-exitcode 1 "$BUILD/tests/test_cuda_backend"
  step racecheck 1800 compute-sanitizer --tool racecheck --error-exitcode 1 "$BUILD/tests/test_cuda_backend"
fi

# Every playground program (one per hand-written kernel): FAIL lines are bugs.
for p in "$BUILD"/bench/cuda/*; do
  [ -f "$p" ] && [ -x "$p" ] || continue
  step "playground-$(basename "$p")" 300 "$p" --peak-gbs "$PEAK_GBS"
done
grep -l "FAIL" "$REPORT"/playground-*.log 2>/dev/null | sed 's/^/playground FAIL in: /' | tee -a "$summary"

# The engine: per-op device times, each precision, and the bf16 A/B of the
# fused attention (MDPS_CUDNN_SDPA=0: the generic cuBLAS + softmax path).
MDPS="$BUILD/mdps"
for prec in fp32 tf32 bf16; do
  step "bench-unet-$prec" 600 "$MDPS" bench unet --device cuda --precision "$prec" --ops --json
done
step bench-unet-bf16-no-sdpa 600 env MDPS_CUDNN_SDPA=0 "$MDPS" bench unet --device cuda --precision bf16 --json
if [ -z "${QUICK:-}" ]; then
  # The authors' bottle shape, the performance goal of docs/gpu.md.
  for prec in tf32 bf16; do
    step "bench-sampler-256-$prec" 1800 "$MDPS" bench sampler --device cuda --precision "$prec" --ops \
      --image-size 256 --base-channels 64 --batch 8 --json
  done
  step bench-sampler-256-bf16-no-sdpa 1800 env MDPS_CUDNN_SDPA=0 "$MDPS" bench sampler --device cuda \
    --precision bf16 --image-size 256 --base-channels 64 --batch 8 --json
else
  step bench-sampler-64-bf16 600 "$MDPS" bench sampler --device cuda --precision bf16 --ops --json
fi
grep -h "refused" "$REPORT"/bench-*.log 2>/dev/null | sort -u | sed 's/^/attention: /' | tee -a "$summary"

echo "report: $REPORT (send the whole directory; summary.txt first)"
