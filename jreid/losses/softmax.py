"""Softmax-family identity losses."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.1) -> jax.Array:
  """Mean cross-entropy with FastReID's label smoothing.

  The target puts 1 - eps on the true class and eps / (K - 1) on each of the
  other K - 1 classes (FastReID's form; Szegedy et al. instead spread eps over
  all K classes, giving the true class 1 - eps + eps / K). eps = 0 is plain
  cross-entropy. Logits are promoted to float32 so a bf16 model still gets an
  accurate log-softmax.

  Args:
    logits: (B, K).
    labels: (B,) integer class ids in [0, K).
    label_smoothing: eps.
  """
  num_classes = logits.shape[-1]
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  off = label_smoothing / max(num_classes - 1, 1)
  targets = one_hot * (1.0 - label_smoothing) + (1.0 - one_hot) * off
  return -jnp.mean(jnp.sum(targets * log_probs, axis=-1))
