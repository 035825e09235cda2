"""Batch-hard triplet loss (Hermans et al., In Defense of the Triplet Loss), as FastReID computes it."""
from __future__ import annotations

import jax
import jax.numpy as jnp

# d_an of an anchor with no negative in the batch (every sample shares its
# label). Large enough that the margin loss is exactly 0 and softplus(d_ap -
# d_an) underflows to 0 for that anchor, finite so nothing becomes NaN.
NO_NEGATIVE_DISTANCE = 1e9


def euclidean_distances(x: jax.Array) -> jax.Array:
  """All pairwise Euclidean distances of the rows of x, sqrt(clamp(d^2, 1e-12)) as FastReID.

  The clamp keeps sqrt away from 0, where its gradient is infinite, so
  identical embeddings give finite (zero) gradients. Three choices make float32
  results accurate without changing the maths: rows are centred on the batch
  mean first (distances are translation invariant, and smaller norms shrink
  the cancellation in |x|^2 + |y|^2 - 2 x.y), the matmul runs at HIGHEST
  precision (TF32/bf16 matmuls would ruin small distances on GPU/TPU), and the
  diagonal is set to exactly 0 before the clamp.
  """
  x = x - jnp.mean(x, axis=0, keepdims=True)
  sq_norms = jnp.sum(x * x, axis=-1)
  gram = jnp.matmul(x, x.T, precision=jax.lax.Precision.HIGHEST)
  sq = sq_norms[:, None] + sq_norms[None, :] - 2.0 * gram
  sq = jnp.where(jnp.eye(x.shape[0], dtype=bool), 0.0, sq)
  return jnp.sqrt(jnp.maximum(sq, 1e-12))


def batch_hard_triplet(embeddings: jax.Array, labels: jax.Array, margin: float = 0.3,
                       soft_margin: bool = False, normalize: bool = False) -> jax.Array:
  """Mean over anchors of relu(d_ap - d_an + margin), or softplus(d_ap - d_an) with `soft_margin`.

  d_ap is the largest distance from the anchor to a sample with its label,
  the anchor itself included (so an anchor alone in its class has d_ap =
  sqrt(1e-12) = 1e-6, i.e. 0 up to the clamp, and is pushed only by its
  negatives). d_an is the smallest distance to a sample with another label;
  an anchor with none gets `NO_NEGATIVE_DISTANCE`, which zeroes its loss
  (margin and soft margin alike) while staying finite.

  Args:
    embeddings: (B, D); promoted to float32.
    labels: (B,) integer ids.
    margin: used unless `soft_margin`; BoT uses 0.3.
    soft_margin: SBS's soft-margin form, log(1 + exp(d_ap - d_an)).
    normalize: L2-normalise embeddings first (x / (|x| + 1e-12), as FastReID).
  """
  x = embeddings.astype(jnp.float32)
  if normalize:
    # |x| is computed as sqrt(max(|x|^2, 1e-24)): the same value for any
    # non-negligible x, but a finite gradient at x = 0, where the gradient of
    # jnp.linalg.norm is NaN.
    norm = jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-24))
    x = x / (norm + 1e-12)
  dist = euclidean_distances(x)
  same = labels[:, None] == labels[None, :]
  d_ap = jnp.max(jnp.where(same, dist, 0.0), axis=1)
  d_an = jnp.min(jnp.where(same, NO_NEGATIVE_DISTANCE, dist), axis=1)
  if soft_margin:
    return jnp.mean(jax.nn.softplus(d_ap - d_an))
  return jnp.mean(jax.nn.relu(d_ap - d_an + margin))
