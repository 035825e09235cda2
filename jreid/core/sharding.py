"""Data-parallel placement: one 'data' mesh axis over every device of every host.

Under `jax.jit` with these shardings XLA computes batch statistics and losses
over the *global* batch, so 1 device and N devices run the same mathematics.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

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


def maybe_initialize_distributed(enabled: bool) -> None:
  """Multi-host start (SLURM/TPU pods); JAX reads coordinator and process ids from the environment."""
  if enabled:
    jax.distributed.initialize()
