"""Mixed precision as a cast policy: float32 master weights, a lower compute dtype in the model.

`train.compute_dtype="bfloat16"` casts the parameters and the images to
bfloat16 for the forward and backward pass; the optimiser keeps and updates
float32 params, BatchNorm keeps float32 running statistics (flax reduces
its batch statistics in float32), and the losses run in float32 on outputs
cast back up. This needs no dtype plumbing through the modules: flax layers
compute in the dtype of their inputs and params. bfloat16 has float32's
range, so no loss scaling is needed (unlike float16).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jreid.errors import ConfigError

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name: str):
  if name not in COMPUTE_DTYPES:
    raise ConfigError(f"train.compute_dtype={name!r}; choose one of {sorted(COMPUTE_DTYPES)}")
  return COMPUTE_DTYPES[name]


def cast_floating(tree, dtype):
  """Every floating-point leaf of `tree` as `dtype`; integer leaves unchanged."""
  def cast(x):
    return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
  return jax.tree.map(cast, tree)
