#!/usr/bin/env bash
# On the GPU machine: install the carried wheels offline, then run bench/gpu.py.
#
#   bash scripts/gpu_run.sh [bench/gpu.py's options]
#
# Its python3 (3.12, /opt/torch/.venv) has torch and the rest (scripts/gpu-device-packages.txt);
# scripts/gpu_wheels.sh fetched what it lacks into .gpu-wheels/. The wheels go into that same
# environment without resolving (their dependencies were checked where they were fetched),
# then the project itself (built by the carried hatchling), so that `imagegate` lies next to
# python3, where tests/processes.py looks. The JSON and the log go to $OUT when it is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.gpu-wheels}
RESULTS=bench/results
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ls "$WHEELS"/*.whl >/dev/null || { echo "no wheels in $WHEELS: run scripts/gpu_wheels.sh first" >&2; exit 2; }
"$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir "$WHEELS"/*.whl
"$PYTHON" -m pip install --quiet --no-index --no-deps --no-build-isolation --no-cache-dir .
"$PYTHON" -m pip check | grep -i -E "imagegate|diffusers|nudenet" || true  # what is off, if anything
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
status=0
"$PYTHON" bench/gpu.py "$@" 2>&1 | tee "$RESULTS/gpu.log" || status=$?
if [ -n "${OUT:-}" ]; then
    cp "$RESULTS"/gpu.json "$RESULTS"/gpu.log "$OUT"/ 2>/dev/null || true
fi
exit "$status"
