#!/usr/bin/env bash
# Run THERE, on the device machine, from the repo root, as one device `run` call carrying .whl
# (made here by benchmarks/device_wheels.sh):
#     run(command="bash benchmarks/device_run.sh", carry=[".whl"], timeout_s=540)
# Installs the carried wheels into /tmp/site (no network there), runs the full device suite
# (8.5 min budget, each part under its own) and copies the JSON to $OUT so it comes back.
# Extra arguments go to the suite (e.g. --parts=train_jreid_bfloat16 for a rerun of one part).
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv || true
touch /tmp/device_suite.start
python3 -m benchmarks.device_suite "$@" 2>&1 | tee "${OUT:-/tmp}/device_suite.log"
status=${PIPESTATUS[0]}
find benchmarks/results -name 'device_*.json' -newer /tmp/device_suite.start -exec cp {} "${OUT:-/tmp}/" \;
exit "$status"
