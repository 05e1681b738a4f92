#!/usr/bin/env bash
# Installs the Debian packages mdps builds with (skips what is already there).
# The CUDA toolkit (nvcc, cuDNN, cuBLAS) is optional and not installed here.
set -euo pipefail
pkgs=(cmake ninja-build g++ clang libclang-rt-dev libopenblas-dev libstb-dev libpng-dev libjpeg-dev libcli11-dev doctest-dev
  # headless Chromium and a font: test_report_browser renders report.html
  chromium fonts-dejavu-core
  # the Python package (python/, tools/scripts/test_python.sh)
  pybind11-dev python3-dev python3-venv python3-numpy python3-pytest)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all packages present"
  exit 0
fi
echo "install_deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
