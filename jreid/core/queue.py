"""A first-in first-out queue of key features, as arrays in the train state.

MoCo's dictionary: each step's keys overwrite the oldest entries, so the
negatives are the keys of the last `size / batch` steps. The queue is a
(size, D) array plus a write pointer, updated functionally inside the jitted
step; writes wrap around the end, so `size` need not be a multiple of the batch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def init(rng: jax.Array, size: int, dim: int) -> jax.Array:
  """Random unit vectors (MoCo's start): uninformative negatives until real keys replace them."""
  queue = jax.random.normal(rng, (size, dim), jnp.float32)
  return queue / jnp.linalg.norm(queue, axis=-1, keepdims=True)


def enqueue(queue: jax.Array, pointer: jax.Array, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Writes `keys` (B, D) at rows pointer, pointer+1, ... (mod size); returns (queue, next pointer)."""
  size, batch = queue.shape[0], keys.shape[0]
  if batch > size:
    raise ValueError(f"a batch of {batch} keys does not fit a queue of {size}")
  rows = (pointer + jnp.arange(batch)) % size
  queue = queue.at[rows].set(jax.lax.stop_gradient(keys).astype(queue.dtype))
  return queue, (pointer + batch) % size
