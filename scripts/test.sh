#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then runs every test: the C++ suite under CTest
# and the Python suite under pytest. Exits non-zero when any test fails.
#
#   bash scripts/test.sh [extra pytest args]
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "test.sh: setup failed" >&2; exit 1; }

VENV=${MONOQUANT_VENV:-.venv}
BUILD_DIR=${MONOQUANT_BUILD_DIR:-build/python}
export PATH="$PWD/$VENV/bin:$PATH"

echo "== C++ tests (ctest)"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j 2
cpp_rc=$?

echo "== Python tests (pytest)"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
py_rc=$?

if [ $cpp_rc -ne 0 ] || [ $py_rc -ne 0 ]; then
  echo "test.sh: FAILED (ctest exit $cpp_rc, pytest exit $py_rc)" >&2
  exit 1
fi
echo "test.sh: all tests passed"
