#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then runs the main job on the bundled default:
# quantize every weight of the pretrained all-MiniLM-L6-v2 to int8, int4 and
# float16 and report bytes and SQNR per tensor and in total.
#
#   bash scripts/demo.sh [model.safetensors] [--group-size N] [--threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${MONOQUANT_VENV:-.venv}/bin/python" -m monoquant.demo "$@"
