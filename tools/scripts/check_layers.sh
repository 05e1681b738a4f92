#!/usr/bin/env bash
# Fails when a file includes a header of a higher layer (docs/architecture.md).
# The layers, lowest first: engine/core with kernels/ (the backends and the
# arithmetic they share with the engine, kernels/shared); engine/io; engine/model; engine/diffusion; engine/detect;
# engine/eval; then api/, tools/, tests/ and bench/, which may include anything.
# Run by CTest (test `layering`) and usable by hand: bash tools/scripts/check_layers.sh [ROOT]
set -uo pipefail
cd "${1:-$(dirname "$0")/../..}"
rank() {  # rank of a path (file or included header)
  case "$1" in
    engine/core/*|kernels/*) echo 1 ;;
    engine/io/*) echo 2 ;;
    engine/model/*) echo 3 ;;
    engine/diffusion/*) echo 4 ;;
    engine/detect/*) echo 5 ;;
    engine/eval/*) echo 6 ;;
    engine/*) echo 99 ;;  # a file outside every layer
    *) echo 100 ;;
  esac
}
bad=0 files=0
while IFS= read -r f; do
  files=$((files + 1))
  r=$(rank "$f")
  if [ "$r" = 99 ]; then echo "check_layers: $f is in engine/ but in no layer folder"; bad=1; continue; fi
  while IFS= read -r inc; do
    ri=$(rank "$inc")
    if [ "$ri" = 99 ]; then echo "check_layers: $f includes \"$inc\", which is in no layer"; bad=1
    elif [ "$ri" != 100 ] && [ "$ri" -gt "$r" ]; then
      echo "check_layers: $f (layer ${f%/*}) includes \"$inc\" from a higher layer"; bad=1
    fi
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" | grep -E '^(engine|kernels)/')
done < <(find engine kernels -type f \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' \) | sort)
[ "$files" -gt 0 ] || { echo "check_layers: no sources found (wrong directory?)"; exit 1; }
if [ $bad -ne 0 ]; then echo "check_layers: FAILED"; exit 1; fi
echo "check_layers: $files files, every include points to the same or a lower layer"
