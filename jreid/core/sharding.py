"""Data-parallel placement: one 'data' mesh axis over every device of every host.

Under `jax.jit` with these shardings XLA computes batch statistics and losses
over the *global* batch, so 1 device and N devices run the same mathematics.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jreid.errors import ConfigError

DATA_AXIS = "data"


def data_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
  """Assembles each host's slice of the batch into global arrays split over the mesh."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


def check_divisible(batches: dict[str, int]) -> None:
  """Each global batch (config key -> size) splits evenly over every device of the mesh.

  Otherwise `global_batch` fails with a raw sharding error at the first step;
  evaluation would silently round its batch up to the next multiple.
  """
  devices = jax.device_count()
  for key, size in batches.items():
    if size % devices:
      raise ConfigError(f"config.{key}={size} must be a multiple of the device count {devices} "
                        f"(jax.device_count(): a batch splits evenly over the devices)")


def process_layout() -> dict:
  """num_processes / process_id from JAX_NUM_PROCESSES / JAX_PROCESS_ID, where set.

  JAX itself reads only JAX_COORDINATOR_ADDRESS from the environment (SLURM, MPI
  and TPU pods give it the rest); a hand-started group of processes, as
  launch/local_multiprocess.sh starts, names each process with these two.
  """
  layout = {}
  for key, name in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
    value = os.environ.get(name)
    if value is None:
      continue
    if not value.isdigit():
      raise ConfigError(f"{name}={value!r} must be a whole number (the {key.replace('_', ' ')})")
    layout[key] = int(value)
  return layout


def maybe_initialize_distributed(enabled: bool) -> None:
  """Multi-process start (SLURM/TPU pods/localhost); the coordinator and process ids come from the environment.

  Once per process: `jreid.protocols.run` starts it before the protocol, the loop again per run.
  CPU processes exchange their collectives through gloo (XLA's CPU default has none across processes).
  """
  if not enabled or jax.distributed.is_initialized():
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(**process_layout())
  except (ValueError, RuntimeError) as err:  # no cluster found, or JAX already running
    raise ConfigError(f"config.distributed=True, but jax.distributed.initialize() failed: "
                      f"{' '.join(str(err).split())} (it reads the coordinator from SLURM / a TPU pod "
                      "/ JAX_COORDINATOR_ADDRESS with JAX_NUM_PROCESSES and JAX_PROCESS_ID; set "
                      "config.distributed=False on one host)") from None
