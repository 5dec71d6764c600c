#!/usr/bin/env bash
# Download, here (PyPI), the wheels that the GPU machine's Python 3.12 lacks to run
# `imagegate serve` with the diffusers backend and bench/gpu.py, into .gpu-wheels/ (git
# ignores it), and check offline that nothing is missing. scripts/gpu_wheels.py says how.
#
#   bash scripts/gpu_wheels.sh [FOLDER]
#
# Then, on the GPU machine, with .gpu-wheels carried beside the working tree:
#   bash scripts/gpu_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" scripts/gpu_wheels.py "$@"
