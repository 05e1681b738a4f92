#!/usr/bin/env bash
# The install-and-embed check (issue 9): configure, build and install mdps to
# a temporary prefix, then build examples/embed.c against the *installed*
# package twice (pkg-config, and find_package(mdps) through
# examples/CMakeLists.txt), and run it on a tiny model trained for one step
# by the installed `mdps`, the shared ResNet-18 weights and a generated
# image. Passes when the last line embed prints is a decimal number.
#   MDPS_INSTALL_BUILD  build folder (default build-install)
#   MDPS_SHARED_DIR     shared data (default ../shared); the weights are
#                       weights/resnet18_imagenet_l1-l3.safetensors
#   CMAKE_ARGS          extra configure arguments, e.g. -DBUILD_SHARED_LIBS=OFF
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$(pwd)
JOBS=${JOBS:-2}
BUILD=${MDPS_INSTALL_BUILD:-build-install}
SHARED=${MDPS_SHARED_DIR:-$SRC/../shared}
FEATURES=$SHARED/weights/resnet18_imagenet_l1-l3.safetensors
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mdps-install.XXXXXX")
PREFIX=$WORK/prefix
trap 'rm -rf "$WORK"' EXIT
[ -f "$FEATURES" ] || { echo "test_install: $FEATURES not found (set MDPS_SHARED_DIR)" >&2; exit 1; }

echo "--- configure, build, install to $PREFIX"
# shellcheck disable=SC2086
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMDPS_BUILD_TESTS=OFF \
  -DCMAKE_INSTALL_PREFIX="$PREFIX" ${CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD" -j"$JOBS" --target mdps mdps_lib
cmake --install "$BUILD" >/dev/null
LIBDIR=$(dirname "$(find "$PREFIX" -name mdps.pc -print -quit)")/..
[ -f "$PREFIX/include/mdps/mdps.h" ] && [ -f "$PREFIX/include/mdps/mdps_c.h" ] || { echo "headers missing" >&2; exit 1; }
[ -f "$LIBDIR/cmake/mdps/mdpsConfig.cmake" ] || { echo "mdpsConfig.cmake missing" >&2; exit 1; }

echo "--- test data: two generated images, a tiny model trained one step"
mkdir -p "$WORK/images"
cat >"$WORK/gen.c" <<'GEN'
#include <stb/stb_image_write.h>
#include <stdlib.h>
int main(int argc, char** argv) { /* gen OUT.png W H SEED: noise plus a bright square */
  int w = atoi(argv[2]), h = atoi(argv[3]), x, y, c;
  unsigned char* p = malloc((size_t)w * h * 3);
  srand((unsigned)atoi(argv[4]));
  for (y = 0; y < h; ++y)
    for (x = 0; x < w; ++x)
      for (c = 0; c < 3; ++c) p[(y * w + x) * 3 + c] = (x > w / 3 && x < w / 2 && y > h / 3 && y < h / 2) ? 240 : 60 + rand() % 40;
  return !stbi_write_png(argv[1], w, h, 3, p, w * 3);
}
GEN
cc "$WORK/gen.c" -o "$WORK/gen" -lstb
"$WORK/gen" "$WORK/images/a.png" 32 32 1
"$WORK/gen" "$WORK/images/b.png" 32 32 2
"$WORK/gen" "$WORK/test.png" 48 40 3
"$PREFIX/bin/mdps" train --data "$WORK/images" --out "$WORK/model.safetensors" --image-size 32 \
  --base-channels 32 --channel-mult 1,2 --res-blocks 1 --attention 16 --batch 2 --steps 1 --quiet >/dev/null

check_number() {  # check_number LABEL OUTPUT
  local last
  last=$(printf '%s\n' "$2" | tail -n 1)
  if [[ "$last" =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; then
    echo "$1: image score $last"
  else
    echo "$1: last line is not a number: '$last'" >&2
    printf '%s\n' "$2" >&2
    exit 1
  fi
}

echo "--- embed via pkg-config"
export PKG_CONFIG_PATH="$LIBDIR/pkgconfig"
# shellcheck disable=SC2046
cc -std=c99 -Wall -Wextra -Werror examples/embed.c -o "$WORK/embed" $(pkg-config --cflags --libs mdps) -lstb -lm
out=$(LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$WORK/embed" "$WORK/model.safetensors" "$FEATURES" "$WORK/test.png")
check_number "pkg-config" "$out"
score_pc=$(printf '%s\n' "$out" | tail -n 1)

echo "--- embed via find_package(mdps)"
cmake -S examples -B "$WORK/examples-build" -G Ninja -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null
cmake --build "$WORK/examples-build" >/dev/null
out=$(LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$WORK/examples-build/embed" "$WORK/model.safetensors" "$FEATURES" "$WORK/test.png")
check_number "find_package" "$out"
[ "$(printf '%s\n' "$out" | tail -n 1)" = "$score_pc" ] || { echo "the two builds scored differently" >&2; exit 1; }

echo "--- a bad model path fails with a message, not a crash"
if err=$(LD_LIBRARY_PATH="$LIBDIR" "$WORK/embed" "$WORK/none.safetensors" "$FEATURES" "$WORK/test.png" 2>&1); then
  echo "embed accepted a missing model" >&2; exit 1
fi
[[ "$err" == *none.safetensors* ]] || { echo "message does not name the file: $err" >&2; exit 1; }
echo "test_install: OK"
