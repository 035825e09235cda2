#!/usr/bin/env bash
# Run HERE (a machine that reaches PyPI), from the repo root: downloads into .whl/ (git-ignored)
# the Python 3.12 wheels that jreid needs and the device machine's image lacks (the device
# tool's KINDS.md lists what it holds: jax, flax, optax, orbax-checkpoint, chex, torch, ...;
# not grain, ml_collections or grain's array-record and portpicker). Versions are the ones
# this project is tested with. Then `bash benchmarks/device_run.sh` runs there, carrying .whl.
# PYTHON_VERSION=3.11 fetches them for another interpreter (a dry run of device_run.sh here).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(grain==0.2.18 array-record==0.8.6 portpicker==1.6.0 ml_collections==1.1.0)
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${PYTHON_VERSION:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "${WHEELS[@]}"
ls -1 .whl
echo "total: $(du -cb .whl/*.whl | tail -n 1 | cut -f1) bytes in .whl (the device tool carries at most 64 MiB with the tree)"
