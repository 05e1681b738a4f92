#!/usr/bin/env bash
# The test command (README step 2, and what CI runs): builds the release tree
# if needed, runs every CTest suite, then the `fast` suites again under
# ASan+UBSan, then the safetensors, PyTorch-checkpoint and image fuzzers for a
# bounded time (FUZZ_SECONDS, TORCH_FUZZ_SECONDS, IMAGE_FUZZ_SECONDS). Each stage prints its
# time; the whole run is budgeted well inside CI's 90 minutes on 2 cores.
#   MDPS_SKIP_INSTALL=1 / MDPS_SKIP_PYTHON=1 / MDPS_SKIP_SANITIZERS=1 / MDPS_SKIP_FUZZ=1 / MDPS_SKIP_STANDIN=1 skip those stages locally.
# The `standin` stages build the CUDA backend against the CPU stand-ins of the
# CUDA runtime, cuBLAS and cuDNN (-DMDPS_CUDA_STANDIN=ON, docs/gpu.md) and run
# it: test_cuda_backend, test_cuda_standin and the table of backend op cases
# (test_backend_ops, every op against the CPU), then `mdps eval --device cuda`
# against `--device cpu` on the demo data. Stand-in results, never GPU results;
# without the CUDA headers the stages report themselves skipped.
# The Python package is installed with pip and tested with pytest
# (tools/scripts/test_python.sh).
set -uo pipefail
cd "$(dirname "$0")/../.."
JOBS=${JOBS:-2}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
TORCH_FUZZ_SECONDS=${TORCH_FUZZ_SECONDS:-30}
IMAGE_FUZZ_SECONDS=${IMAGE_FUZZ_SECONDS:-30}
status=0
t_all=$(date +%s)

stage() {  # stage NAME BUDGET_S COMMAND...
  local name=$1 budget=$2
  shift 2
  local t0=$(date +%s)
  echo "=== [$name] (budget ${budget}s)"
  timeout --foreground "$budget" "$@"
  local rc=$?
  echo "=== [$name] rc=$rc, $(($(date +%s) - t0))s"
  [ $rc -ne 0 ] && status=1
  return $rc
}

stage configure 300 cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
stage build 2400 cmake --build build -j"$JOBS"
mkdir -p build
stage test 1800 bash -c "ctest --test-dir build --output-on-failure -j$JOBS 2>&1 | tee build/ctest.log; exit \${PIPESTATUS[0]}"

# The library as integrators get it: installed, then examples/embed.c built
# against the installed package and run (tools/scripts/test_install.sh).
if [ -z "${MDPS_SKIP_INSTALL:-}" ]; then
  stage install-embed 1200 env JOBS="$JOBS" MDPS_INSTALL_BUILD=build-install tools/scripts/test_install.sh
fi

# The Python package as users get it: `pip install .` into a venv, then its
# pytest suite against build/mdps (tools/scripts/test_python.sh).
if [ -z "${MDPS_SKIP_PYTHON:-}" ]; then
  stage python 1800 env MDPS_PYTHON_BUILD=build-python tools/scripts/test_python.sh
fi

if [ -z "${MDPS_SKIP_SANITIZERS:-}" ]; then
  stage asan-configure 300 cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMDPS_SANITIZE=ON \
    -DMDPS_CUDA=OFF -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" >/dev/null
  stage asan-build 1800 cmake --build build-asan -j"$JOBS"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    stage asan-test 1200 bash -c "ctest --test-dir build-asan -L fast --output-on-failure -j$JOBS 2>&1 | tee build-asan/ctest.log; exit \${PIPESTATUS[0]}"
fi

if [ -z "${MDPS_SKIP_STANDIN:-}" ]; then
  stage standin-configure 300 cmake -S . -B build-standin -G Ninja -DCMAKE_BUILD_TYPE=Release -DMDPS_CUDA=OFF \
    -DMDPS_CUDA_STANDIN=ON >/dev/null
  if [ -f build-standin/standin-skipped.txt ]; then
    echo "=== [standin] skipped: $(cat build-standin/standin-skipped.txt)"
    standin_skipped=1
  else
    stage standin-build 1800 cmake --build build-standin -j"$JOBS" --target mdps test_cuda_backend \
      test_cuda_standin test_backend_ops standin_compare_maps
    stage standin-test 900 bash -c "ctest --test-dir build-standin -R '^test_(cuda_backend|cuda_standin|backend_ops)\$' --output-on-failure 2>&1 | tee build-standin/ctest.log; exit \${PIPESTATUS[0]}"
    # The whole evaluation (U-Net sampler, ResNet map, scores) on the stand-ins
    # against the CPU: a tiny demo prior, 3 test images, 2 + 4 DDIM steps.
    SD=build-standin/eval-check
    rm -rf "$SD"
    EVAL_ARGS="--dataset $SD/demo/data/demo --threads $JOBS --round1-t 200 --t-start 400 --skip 100 --limit 1 \
      --blur-sigma 1 --blur-kernel 9 --no-panels --quiet --model $SD/demo/model.safetensors"
    FEATURES=../shared/weights/resnet18_imagenet_l1-l3.safetensors
    [ -f "$FEATURES" ] && EVAL_ARGS="$EVAL_ARGS --features $FEATURES"
    stage standin-eval 1200 bash -c "build-standin/mdps demo --quick --steps 40 --out $SD/demo >/dev/null &&
      build-standin/mdps eval $EVAL_ARGS --out $SD/cpu --device cpu >/dev/null &&
      build-standin/mdps eval $EVAL_ARGS --out $SD/cuda --device cuda >/dev/null &&
      build-standin/tests/standin_compare_maps $SD/cpu $SD/cuda 1e-5"
  fi
fi

if [ -z "${MDPS_SKIP_FUZZ:-}" ]; then
  if command -v clang++ >/dev/null; then
    stage fuzz-configure 300 env CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DMDPS_FUZZ=ON -DMDPS_BUILD_TESTS=OFF -DMDPS_CUDA=OFF >/dev/null
    stage fuzz-build 900 cmake --build build-fuzz -j"$JOBS" --target fuzz_safetensors fuzz_torch_pickle fuzz_image
    mkdir -p build-fuzz/corpus
    cp -n tests/fuzz/corpus/* build-fuzz/corpus/ 2>/dev/null || true
    stage fuzz-run $((FUZZ_SECONDS + 120)) build-fuzz/tests/fuzz/fuzz_safetensors -max_total_time="$FUZZ_SECONDS" \
      -rss_limit_mb=2048 -max_len=65536 build-fuzz/corpus
    # `mdps convert` (PyTorch checkpoints), seeded with the test checkpoints.
    mkdir -p build-fuzz/corpus-torch
    cp -n tests/data/convert/*.pt tests/data/convert/*.pth build-fuzz/corpus-torch/ 2>/dev/null || true
    stage fuzz-torch-run $((TORCH_FUZZ_SECONDS + 120)) build-fuzz/tests/fuzz/fuzz_torch_pickle \
      -max_total_time="$TORCH_FUZZ_SECONDS" -rss_limit_mb=2048 -max_len=65536 -dict=tests/fuzz/torch_pickle.dict \
      build-fuzz/corpus-torch
    # Image decoding (libpng, libjpeg-turbo, the BMP-only stb), seeded with tiny images.
    mkdir -p build-fuzz/corpus-image
    cp -n tests/fuzz/corpus-image/* build-fuzz/corpus-image/ 2>/dev/null || true
    stage fuzz-image-run $((IMAGE_FUZZ_SECONDS + 120)) build-fuzz/tests/fuzz/fuzz_image \
      -max_total_time="$IMAGE_FUZZ_SECONDS" -rss_limit_mb=2048 -max_len=65536 -dict=tests/fuzz/image.dict \
      build-fuzz/corpus-image
  else
    echo "=== [fuzz] skipped: clang++ not found"
  fi
fi

echo "=== all stages: $(($(date +%s) - t_all))s, status $status"
# One closing line over both CTest runs (skipped = CUDA suites without a device).
passed=0 failed=0 skipped=0
for log in build/ctest.log build-asan/ctest.log build-standin/ctest.log; do
  [ -f "$log" ] || continue
  total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
  nfail=$(sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' "$log" | tail -1)
  nskip=$(grep -c -E 'Not Run|\*\*\*Skipped' "$log" || true)
  [ -n "$total" ] || continue
  passed=$((passed + total - nfail - nskip)); failed=$((failed + nfail)); skipped=$((skipped + nskip))
done
# pytest's closing line ("3 passed, 1 failed, 2 skipped in 40.1s"; errors count as failed).
if [ -z "${MDPS_SKIP_PYTHON:-}" ] && [ -f build-python/pytest.log ]; then
  line=$(grep -E '^=*[ ]*[0-9]+ (passed|failed|skipped|error)|no tests ran' build-python/pytest.log | tail -1)
  count() { echo "$line" | grep -oE "[0-9]+ $1" | grep -oE '[0-9]+' || echo 0; }
  passed=$((passed + $(count passed))); failed=$((failed + $(count failed) + $(count error)))
  skipped=$((skipped + $(count skipped)))
fi
[ $status -ne 0 ] && [ $failed -eq 0 ] && failed=1  # a stage failed outside CTest (build, fuzz)
# The stand-in stage without the CUDA headers: its three suites count as skipped.
[ -n "${standin_skipped:-}" ] && skipped=$((skipped + 3))
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $status
