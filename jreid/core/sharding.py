"""Data-parallel placement: one 'data' mesh axis over every device of every host.

Under `jax.jit` with these shardings XLA computes batch statistics and losses
over the *global* batch, so 1 device and N devices run the same mathematics.
"""
from __future__ import annotations

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


def maybe_initialize_distributed(enabled: bool) -> None:
  """Multi-host start (SLURM/TPU pods); JAX reads coordinator and process ids from the environment.

  Once per process: `jreid.protocols.run` starts it before the protocol, the loop again per run.
  """
  if not enabled or jax.distributed.is_initialized():
    return
  try:
    jax.distributed.initialize()
  except (ValueError, RuntimeError) as err:  # no cluster found, or JAX already running
    raise ConfigError(f"config.distributed=True, but jax.distributed.initialize() failed: "
                      f"{' '.join(str(err).split())} (it reads the coordinator from SLURM / a TPU pod "
                      "/ JAX_COORDINATOR_ADDRESS; set config.distributed=False on one host)") from None
