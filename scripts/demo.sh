#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then runs the main job on the bundled default:
# `monoquant quantize` turns the pretrained all-MiniLM-L6-v2 into an INT8
# dynamic and an INT4 directory (per-layer report and summary), each is loaded
# back with monoquant.load, and a few sentences are embedded: cosine to the
# float model and speed against it.
#
#   bash scripts/demo.sh [model_dir] [--out DIR] [--threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${MONOQUANT_VENV:-.venv}/bin/python" -m monoquant.demo "$@"
