#!/usr/bin/env bash
# Multi-node GPU training under SLURM: one process per node, all its GPUs local.
#   sbatch --nodes=2 --gpus-per-node=8 launch/slurm.sh configs/baseline.py runs/bot_market --config.data.root=/data
# jax.distributed.initialize() reads the coordinator and process ids from SLURM's environment.
#SBATCH --ntasks-per-node=1
set -euo pipefail
config=$1; workdir=$2; shift 2
srun python -m jreid.main --config="$config" --workdir="$workdir" --config.distributed=True "$@"
