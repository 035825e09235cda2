#!/usr/bin/env bash
# N processes on this machine: the code path of N hosts (one coordinator, each process
# its own devices, its own slice of every batch; process 0 writes the files).
#   bash launch/local_multiprocess.sh 2 configs/baseline.py:synth runs/synth_2p [--config.seed=1 ...]
# GPUs: the visible GPUs are split evenly, process i takes the i-th share.
# CPU: CPU_DEVICES_PER_PROCESS=2 gives each process 2 simulated devices (CI's test does).
# PYTHON names the interpreter (default: python); the coordinator listens on
# localhost:$JREID_COORDINATOR_PORT (default: a free port).
# Exits with the first failing process's status; Ctrl-C stops every process.
set -euo pipefail
processes=$1; config=$2; workdir=$3; shift 3
python=${PYTHON:-python}
port=${JREID_COORDINATOR_PORT:-$("$python" -c \
  'import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')}

gpus=()
if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
  IFS=, read -r -a gpus <<< "$CUDA_VISIBLE_DEVICES"
elif command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1; then
  mapfile -t gpus < <(nvidia-smi --query-gpu=index --format=csv,noheader)
fi
if (( ${#gpus[@]} > 0 && ${#gpus[@]} % processes )); then
  echo "local_multiprocess.sh: ${#gpus[@]} GPUs do not split evenly over $processes processes" >&2
  exit 2
fi
share=$(( ${#gpus[@]} / processes ))

pids=()
trap 'kill "${pids[@]}" 2> /dev/null || true' INT TERM
for (( i = 0; i < processes; i++ )); do
  env=(JAX_COORDINATOR_ADDRESS="localhost:$port" JAX_NUM_PROCESSES="$processes" JAX_PROCESS_ID="$i")
  if (( share > 0 )); then
    mine=("${gpus[@]:$(( i * share )):$share}")
    env+=(CUDA_VISIBLE_DEVICES="$(IFS=,; echo "${mine[*]}")")
  fi
  if [[ -n "${CPU_DEVICES_PER_PROCESS:-}" ]]; then
    env+=(XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$CPU_DEVICES_PER_PROCESS")
  fi
  env "${env[@]}" "$python" -m jreid.main --config="$config" --workdir="$workdir" \
    --config.distributed=True "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || { code=$?; (( status )) || status=$code; }
done
exit "$status"
