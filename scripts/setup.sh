#!/usr/bin/env bash
# Installs everything monoquant needs on a Debian 12 machine, then builds and
# installs it into ./.venv. Idempotent: a second run only rebuilds what changed.
#
#   bash scripts/setup.sh
#
# Environment: MONOQUANT_VENV (default ./.venv), MONOQUANT_BUILD_DIR (default
# ./build/python, the one CMake build dir for the extension, CLI, C++ tests
# and benches).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${MONOQUANT_VENV:-.venv}
BUILD_DIR=${MONOQUANT_BUILD_DIR:-build/python}

say() { printf '== setup: %s\n' "$*" >&2; }

# --- system packages ---------------------------------------------------------
apt_packages=(g++ make git libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev libopenblas-pthread-dev)
# Python's venv module and headers: only from apt when this python3 lacks them.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then apt_packages+=(python3-venv); fi
if [ ! -f "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)/Python.h" ]; then
  apt_packages+=(python3-dev)
fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing apt packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python environment ------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first and pinned: anything unpinned or newer pulls a multi-GB CUDA build.
if ! "$PY" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' >/dev/null 2>&1; then
  say "installing torch==2.13.0"
  "$PY" -m pip install -q torch==2.13.0
fi
say "installing build and test requirements"
"$PY" -m pip install -q -r requirements-dev.txt

# --- build and install monoquant ----------------------------------------------
# One build dir serves the wheel (extension + CLI) and the C++ tests/benches,
# so the core compiles once. --no-build-isolation reuses the venv's tools.
say "building monoquant (build dir $BUILD_DIR)"
"$PY" -m pip install -q --no-build-isolation --no-deps \
  -C build-dir="$BUILD_DIR" \
  -C cmake.define.MONOQUANT_BUILD_TESTS=ON \
  -C cmake.define.MONOQUANT_BUILD_BENCH=ON \
  .
say "ready: $VENV/bin/monoquant, $VENV/bin/python -c 'import monoquant'"
