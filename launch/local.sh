#!/usr/bin/env bash
# Single host, every local device (CPU, GPUs or TPU cores), data parallel.
#   bash launch/local.sh configs/baseline.py:synth runs/synth [--config.seed=1 ...]
set -euo pipefail
config=$1; workdir=$2; shift 2
exec python -m jreid.main --config="$config" --workdir="$workdir" "$@"
