"""Pairwise circle loss (Sun et al., Circle Loss, CVPR 2020) over the pairs in a batch, as FastReID's `pairwise_circleloss`."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jreid.losses.margin import l2_normalize

# Stands in for -inf on masked pairs: logsumexp of a row of it stays finite
# (so do its gradients), and softplus of it is exactly 0.
_MASKED = -1e30


def pairwise_circle(embeddings: jax.Array, labels: jax.Array, margin: float = 0.25,
                    gamma: float = 128.0) -> jax.Array:
  """Mean over anchors of Eq. 6 with the self-paced weights and margins of Eq. 8.

  For anchor i, s_p runs over the cosine similarities to the other samples
  with its label and s_n over those with another label. With
  alpha_p = [1 + m - s_p]_+, alpha_n = [s_n + m]_+ (gradients stopped: they
  weight the pairs, Sec. 3.2), Delta_p = 1 - m and Delta_n = m,

    L_i = softplus(logsumexp_p(-gamma alpha_p (s_p - Delta_p))
                   + logsumexp_n(gamma alpha_n (s_n - Delta_n))),

  which is Eq. 6's log(1 + sum_n exp(.) sum_p exp(.)) computed without
  overflow. An anchor with no positive (alone in its class) or no negative
  (one label in the batch) has an empty sum, so L_i = log(1 + 0) = 0; it still
  counts in the mean over the B anchors, as in FastReID (whose -99999999 mask
  gives the same 0).

  Args:
    embeddings: (B, D); L2-normalised here (promoted to float32).
    labels: (B,) integer ids.
    margin: m; FastReID's default 0.25.
    gamma: the scale; FastReID's default 128.
  """
  x = l2_normalize(embeddings, -1)
  sim = jnp.matmul(x, x.T, precision=jax.lax.Precision.HIGHEST)
  same = labels[:, None] == labels[None, :]
  is_pos = same & ~jnp.eye(x.shape[0], dtype=bool)
  is_neg = ~same
  fixed = jax.lax.stop_gradient(sim)
  alpha_p = jax.nn.relu(1.0 + margin - fixed)
  alpha_n = jax.nn.relu(fixed + margin)
  logit_p = jnp.where(is_pos, -gamma * alpha_p * (sim - (1.0 - margin)), _MASKED)
  logit_n = jnp.where(is_neg, gamma * alpha_n * (sim - margin), _MASKED)
  z = jax.nn.logsumexp(logit_p, axis=1) + jax.nn.logsumexp(logit_n, axis=1)
  valid = jnp.any(is_pos, axis=1) & jnp.any(is_neg, axis=1)
  return jnp.mean(jnp.where(valid, jax.nn.softplus(z), 0.0))
