#!/usr/bin/env bash
# TPU VM pod slice: run the same command on every worker; JAX finds its peers itself.
#   bash launch/tpu_pod.sh my-tpu us-central2-b configs/baseline.py gs://bucket/runs/bot --config.data.root=/data
set -euo pipefail
tpu=$1; zone=$2; config=$3; workdir=$4; shift 4
gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command \
  "cd ~/jreid && python -m jreid.main --config=$config --workdir=$workdir --config.distributed=True $*"
