"""Cluster contrast's memory (Dai et al., "Cluster Contrast for Unsupervised Person Re-ID").

One unit vector per pseudo-label: initialised each epoch to the normalised
cluster means, scored against normalised batch features as logits / t, and
moved towards the batch's hardest sample of each cluster after every step
(the release's ``ClusterMemory`` with ``use_hard``). Pseudo-label -1 is
DBSCAN's outlier: it has no memory entry and is ignored everywhere here.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jreid.losses.margin import l2_normalize

# torch's F.normalize floor: a zero vector stays zero instead of becoming NaN.
_NORM_EPS = 1e-12



def cluster_centroids(features, labels) -> np.ndarray:
  """Normalised mean of the features of each pseudo-label 0..C-1: the memory's start.

  The features are averaged as given (the release averages the extractor's
  L2-normalised features) and the mean is then normalised. Labels must be
  0..C-1 with each present (DBSCAN's numbering), plus any number of -1.
  Every point an outlier gives a (0, D) array: the caller decides what an
  epoch without clusters means.

  Args:
    features: (N, D) numpy or jax array.
    labels: (N,) integer pseudo-labels, -1 for outliers.

  Returns:
    float32 numpy array (C, D), C = max(labels) + 1.
  """
  feats = np.asarray(features, np.float32)
  labels = np.asarray(labels)
  if feats.ndim != 2 or labels.shape != feats.shape[:1]:
    raise ValueError(f"expected features (N, D) and labels (N,), got {feats.shape} and {labels.shape}")
  if labels.size and labels.min() < -1:
    raise ValueError(f"pseudo-labels must be >= -1 (-1: outlier), got {labels.min()}")
  kept = labels >= 0
  num_clusters = int(labels.max()) + 1 if kept.any() else 0
  counts = np.bincount(labels[kept], minlength=num_clusters)
  if (counts == 0).any():
    raise ValueError(f"pseudo-labels must be 0..{num_clusters - 1} with every id present, "
                     f"missing {np.flatnonzero(counts == 0)[:10].tolist()}")
  sums = np.zeros((num_clusters, feats.shape[1]), np.float64)
  np.add.at(sums, labels[kept], feats[kept])
  means = sums / counts[:, None]
  means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), _NORM_EPS)
  return means.astype(np.float32)


def memory_contrastive_loss(features: jax.Array, labels: jax.Array, memory: jax.Array,
                            temperature: float = 0.05, num_clusters=None) -> jax.Array:
  """Mean cross-entropy of normalise(features) @ memory.T / temperature against the pseudo-labels.

  The memory carries no gradient (a buffer in the release, updated by
  `hardest_update` instead). Samples labelled -1 are left out of the mean
  (the release drops outliers before batching, so none reach it there);
  a batch of outliers only gives 0.

  Args:
    features: (B, D) batch features, promoted to float32 and L2-normalised.
    labels: (B,) pseudo-labels in [0, C), or -1.
    memory: (C, D) unit rows.
    temperature: the release's 0.05.
    num_clusters: None, or the rows of `memory` in use (a scalar, traced or not): a
      memory of fixed capacity keeps its shape across epochs of different cluster
      counts, and the unused rows take no part in the softmax.
  """
  x = l2_normalize(features.astype(jnp.float32))
  memory = jax.lax.stop_gradient(memory.astype(jnp.float32))
  logits = jnp.matmul(x, memory.T, precision=jax.lax.Precision.HIGHEST) / temperature
  if num_clusters is not None:
    logits = jnp.where(jnp.arange(memory.shape[0]) < num_clusters, logits, -jnp.inf)
  valid = labels >= 0
  safe = jnp.where(valid, labels, 0)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, safe[:, None], axis=-1)[:, 0]
  return jnp.sum(jnp.where(valid, nll, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def hardest_update(memory: jax.Array, features: jax.Array, labels: jax.Array,
                   momentum: float = 0.2) -> jax.Array:
  """The memory after one step's "hard" update: each cluster moves towards its least similar sample.

  For every pseudo-label c in the batch, the sample x of label c with the
  lowest cosine similarity to the memory entry m_c (before this update;
  ties: the first such sample, as the release's ``np.argmin``) gives
  m_c <- normalise(momentum * m_c + (1 - momentum) * x). The release's
  variable holding that index is named ``median``, but it is an argmin of
  the similarities: the hardest sample. Entries of clusters not in the
  batch, and samples labelled -1, change nothing. Features are normalised
  first, as the release's forward does before the update.

  Args:
    memory: (C, D) unit rows.
    features: (B, D) batch features (no gradient flows through the update).
    labels: (B,) pseudo-labels in [0, C), or -1.
    momentum: the release's 0.2: the weight of the old entry.

  Returns:
    (C, D) float32 memory.
  """
  memory = memory.astype(jnp.float32)
  num_clusters = memory.shape[0]
  batch = labels.shape[0]
  x = jax.lax.stop_gradient(l2_normalize(features.astype(jnp.float32)))
  valid = labels >= 0
  safe = jnp.where(valid, labels, 0)
  sims = jnp.sum(x * memory[safe], axis=-1)
  segment = jnp.where(valid, labels, num_clusters)  # outliers: a segment of their own, dropped
  lowest = jax.ops.segment_min(sims, segment, num_segments=num_clusters + 1)
  is_lowest = valid & (sims == lowest[segment])
  index = jnp.arange(batch)
  first = jax.ops.segment_min(jnp.where(is_lowest, index, batch), segment,
                              num_segments=num_clusters + 1)
  chosen = is_lowest & (first[segment] == index)  # one sample per cluster in the batch
  moved = l2_normalize(momentum * memory[safe] + (1 - momentum) * x)
  target = jnp.where(chosen, labels, num_clusters)  # out of range: dropped by the scatter
  return memory.at[target].set(moved, mode="drop")
