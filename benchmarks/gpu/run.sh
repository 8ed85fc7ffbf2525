#!/usr/bin/env bash
# The GPU run, on the GPU machine (no network): installs the carried wheels over the machine's own JAX, then runs
# benchmarks/gpu/device_run.py. Prepare what it carries with benchmarks/gpu/prepare.sh first.
#
#   bash benchmarks/gpu/run.sh OUT [BUDGET_SECONDS] [full|tiny]
#
# PYTHON picks the interpreter (default python3, the one with the machine's CUDA JAX).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: run.sh OUT [BUDGET_SECONDS] [full|tiny]}
budget=${2:-470}
scale=${3:-full}
python=${PYTHON:-python3}
site=${SITE:-/tmp/universeg_site}
mkdir -p "$out"
"$python" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" .whl/*.whl
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
"$python" benchmarks/gpu/device_run.py --out "$out" --budget "$budget" --scale "$scale" 2>&1 | tee "$out/run.log"
