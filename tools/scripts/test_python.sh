#!/usr/bin/env bash
# The Python package check (issue 22): `pip install .` of this checkout into
# a virtual environment, then the package's pytest suite (python/tests),
# which compares the package with the `mdps` command line bit for bit.
#   PYTHON             the interpreter (default: Debian's /usr/bin/python3,
#                      whose numpy and pytest come from python3-numpy and
#                      python3-pytest; else python3)
#   MDPS_PYTHON_BUILD  work folder: venv/, wheel/ (scikit-build-core's build
#                      tree, kept for fast re-runs), pytest.log (default build-python)
#   MDPS_CLI           the `mdps` to compare with (default build/mdps when
#                      built, else the package's own `python -m mdps`)
#   MDPS_PIP_ARGS      extra `pip install` arguments, e.g.
#                      --config-settings=cmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache
# pip reaches PyPI for the build requirement (scikit-build-core), and for
# numpy and pytest when the interpreter has none. Exits with pytest's code;
# 5 (nothing collected) is a failure like any other.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$(pwd)
WORK=${MDPS_PYTHON_BUILD:-build-python}
if [ -z "${PYTHON:-}" ]; then
  if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi
mkdir -p "$WORK"
rm -f "$WORK/pytest.log"  # counted by run_tests.sh: never a stale one
WORK=$(cd "$WORK" && pwd)
VENV=$WORK/venv

echo "--- venv $VENV ($("$PYTHON" --version 2>&1))"
if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$VENV"
  "$PYTHON" -m venv --system-site-packages "$VENV"
fi
PY=$VENV/bin/python
if ! "$PY" -c 'import numpy, pytest' 2>/dev/null; then
  echo "--- numpy/pytest not in $PYTHON: installing them from PyPI"
  "$PY" -m pip install -q numpy pytest
fi

echo "--- pip install . (scikit-build-core, build tree $WORK/wheel)"
t0=$(date +%s)
# shellcheck disable=SC2086
"$PY" -m pip install -q . --config-settings=build-dir="$WORK/wheel" \
  --config-settings=cmake.define.MDPS_CUDA=OFF ${MDPS_PIP_ARGS:-}
echo "--- installed in $(($(date +%s) - t0))s: $("$PY" -c 'import mdps; print(mdps.__file__)')"

if [ -z "${MDPS_CLI:-}" ] && [ -x "$SRC/build/mdps" ]; then
  export MDPS_CLI=$SRC/build/mdps
fi
echo "--- pytest (comparing with ${MDPS_CLI:-python -m mdps})"
# From the work folder, so `import mdps` is the installed package, not python/mdps.
cd "$WORK"
set +e
"$PY" -m pytest -p no:cacheprovider -q -rs "$SRC/python/tests" 2>&1 | tee "$WORK/pytest.log"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 5 ] && echo "test_python: pytest collected no tests (exit 5): a failure"
exit "$rc"
