"""Contrastive pre-training losses: InfoNCE against a queue of negatives, and MMD.

Features enter L2-normalised (the projection head's output), so dot products
are cosine similarities.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def info_nce(query: jax.Array, positive: jax.Array, negatives: jax.Array,
             temperature: float) -> jax.Array:
  """MoCo's loss, averaged over the batch: -log e^{q.k+/t} / (e^{q.k+/t} + sum_n e^{q.n/t}).

  `query` and `positive` are (B, D) row-aligned pairs, `negatives` (N, D) is
  shared by every row (the queue). The positive carries no gradient: in
  MoCo it comes from the EMA encoder, and stopping it here keeps that true
  whatever the caller passes.
  """
  positive = jax.lax.stop_gradient(positive)
  negatives = jax.lax.stop_gradient(negatives)
  logits = jnp.concatenate([jnp.sum(query * positive, axis=-1, keepdims=True),
                            query @ negatives.T], axis=-1) / temperature
  return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - logits[:, 0])


def gaussian_kernels(x: jax.Array, y: jax.Array, kernel_mul: float, kernel_num: int) -> jax.Array:
  """Sum of `kernel_num` Gaussian kernels over the rows of [x; y], bandwidths in ratio `kernel_mul`.

  The middle bandwidth is the mean pairwise squared distance of the pooled
  rows (held constant), as in Long et al.'s multi-kernel MMD: one fixed
  bandwidth would saturate (all kernels 1 or 0) as the features move.
  """
  rows = jnp.concatenate([x, y], axis=0)
  squared = jnp.sum((rows[:, None, :] - rows[None, :, :]) ** 2, axis=-1)
  n = rows.shape[0]
  base = jax.lax.stop_gradient(jnp.sum(squared) / (n * n - n))
  base = jnp.where(base > 0, base, 1.0)  # identical rows: every kernel is 1 at any bandwidth
  base = base / kernel_mul ** (kernel_num // 2)
  return sum(jnp.exp(-squared / (base * kernel_mul ** i)) for i in range(kernel_num))


def mmd(x: jax.Array, y: jax.Array, kernel_mul: float = 2.0, kernel_num: int = 5) -> jax.Array:
  """Biased squared MMD (Gretton et al. 2012) between the row sets `x` (B, D) and `y` (B', D)."""
  kernels = gaussian_kernels(x, y, kernel_mul, kernel_num)
  b = x.shape[0]
  return (jnp.mean(kernels[:b, :b]) + jnp.mean(kernels[b:, b:])
          - 2 * jnp.mean(kernels[:b, b:]))
