"""Query-gallery distance matrices, computed on the default JAX device.

The (Q, G) matrix is built in fixed-size query chunks so that device memory
stays bounded at any gallery size and the jitted block compiles once per
(chunk, G, D): the last chunk is zero-padded to full size and its padding
rows dropped on the host. While the host copies one chunk out, the device
already computes the next (JAX dispatch is asynchronous).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

METRICS = ("cosine", "euclidean")

# Norms below this are treated as this: a zero feature gets cosine 0 (distance
# 1) to everything instead of NaN.
_EPS = 1e-12


def normalise_rows(x) -> np.ndarray:
  """Rows of `x` (numpy) L2-normalised in float32; a zero row stays zero (torch's F.normalize)."""
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), _EPS)


def compute_distance(qf, gf, metric: str = "cosine", chunk_size: int = 1024) -> np.ndarray:
  """Distances between query features (Q, D) and gallery features (G, D).

  ``cosine``: 1 - cos(q, g), features L2-normalised here, so callers need not.
  ``euclidean``: ||q - g|| (not squared), from ||q||^2 + ||g||^2 - 2 q.g
  clamped at 0 before the square root, since rounding can make it slightly
  negative for near-identical features.

  Returns a float32 numpy array (Q, G) on the host.
  """
  if metric not in METRICS:
    raise ValueError(f"unknown metric {metric!r}; known metrics: {', '.join(METRICS)}")
  qf = jnp.asarray(qf, jnp.float32)
  gf = jnp.asarray(gf, jnp.float32)
  if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1]:
    raise ValueError(f"expected features (Q, D) and (G, D) with the same D, "
                     f"got {qf.shape} and {gf.shape}")
  if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
    raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
  num_q, num_g = qf.shape[0], gf.shape[0]
  out = np.empty((num_q, num_g), np.float32)
  if num_q == 0 or num_g == 0:
    return out

  chunk = min(int(chunk_size), num_q)
  padded = -(-num_q // chunk) * chunk
  qf = jnp.pad(qf, ((0, padded - num_q), (0, 0)))
  gallery, gallery_sq = _prepare_gallery(gf, metric=metric)
  pending = None
  for start in range(0, num_q, chunk):
    block = _distance_block(qf, start, gallery, gallery_sq, metric=metric, chunk=chunk)
    if pending is not None:
      _copy_out(out, *pending)
    pending = (start, block)
  _copy_out(out, *pending)
  return out


def _copy_out(out: np.ndarray, start: int, block: jax.Array):
  stop = min(start + block.shape[0], out.shape[0])
  out[start:stop] = np.asarray(block)[:stop - start]


def _normalize(x: jax.Array) -> jax.Array:
  norm = jnp.linalg.norm(x, axis=1, keepdims=True)
  return x / jnp.maximum(norm, _EPS)


@functools.partial(jax.jit, static_argnames="metric")
def _prepare_gallery(gf: jax.Array, metric: str) -> tuple[jax.Array, jax.Array]:
  """Gallery-side work done once, not once per chunk: normalising, or squared norms."""
  if metric == "cosine":
    return _normalize(gf), jnp.zeros((gf.shape[0],), gf.dtype)
  return gf, jnp.sum(gf * gf, axis=1)


@functools.partial(jax.jit, static_argnames=("metric", "chunk"))
def _distance_block(qf: jax.Array, start, gallery: jax.Array, gallery_sq: jax.Array,
                    metric: str, chunk: int) -> jax.Array:
  # ``start`` is traced, so every chunk reuses one compiled program.
  q = jax.lax.dynamic_slice_in_dim(qf, start, chunk, axis=0)
  # HIGHEST: on GPU/TPU the default matmul precision rounds inputs to
  # TF32/bfloat16, which reorders near-tied gallery items; ranking needs fp32.
  dot = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)
  if metric == "cosine":
    return 1.0 - dot(_normalize(q), gallery.T)
  sq = jnp.sum(q * q, axis=1, keepdims=True) + gallery_sq[None, :] - 2.0 * dot(q, gallery.T)
  return jnp.sqrt(jnp.maximum(sq, 0.0))
