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

# The kernel tests iterate over every linear kernel set this CPU runs; say which, and
# plainly when the AMX set (Sapphire Rapids and later) could not be tested here.
"$VENV/bin/python" -c "
from monoquant import _core
sets = _core.available_linear_kernel_sets()
print('== linear kernel sets tested on this CPU:', ', '.join(sets))
if 'amx' not in sets:
    f = _core.cpu_features()
    why = 'no AMX-TILE/AMX-INT8' if not (f['amx_tile'] and f['amx_int8']) else 'the OS refused the tile state'
    print('== AMX absent (' + why + '): the amx kernels were not tested here')
"

echo "== C++ tests (ctest)"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j 2
cpp_rc=$?

echo "== Python tests (pytest)"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
py_rc=$?

# Fuzz smoke: 20 s per libFuzzer target. libFuzzer needs clang, which only the
# tests need, so it is installed here rather than in setup.sh.
# MONOQUANT_FUZZ_SMOKE=0 skips it. Longer runs: bash scripts/fuzz.sh 600.
fuzz_rc=0
if [ "${MONOQUANT_FUZZ_SMOKE:-1}" != 0 ]; then
  if ! command -v clang++ >/dev/null || ! dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null | grep -q "install ok installed"; then
    echo "== installing clang for the fuzz smoke"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        clang libclang-rt-14-dev >/dev/null; } || { echo "test.sh: could not install clang" >&2; fuzz_rc=1; }
  fi
  if [ $fuzz_rc -eq 0 ]; then
    echo "== fuzz smoke (scripts/fuzz.sh 20)"
    bash scripts/fuzz.sh 20
    fuzz_rc=$?
  fi
else
  echo "== fuzz smoke skipped (MONOQUANT_FUZZ_SMOKE=0)"
fi

if [ $cpp_rc -ne 0 ] || [ $py_rc -ne 0 ] || [ $fuzz_rc -ne 0 ]; then
  echo "test.sh: FAILED (ctest exit $cpp_rc, pytest exit $py_rc, fuzz exit $fuzz_rc)" >&2
  exit 1
fi
echo "test.sh: all tests passed"
