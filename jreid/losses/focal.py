"""Multi-class focal loss (Lin et al., Focal Loss for Dense Object Detection, ICCV 2017)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def focal_loss(logits: jax.Array, labels: jax.Array, alpha: float = 0.25,
               gamma: float = 2.0) -> jax.Array:
  """Mean over the batch of Eq. 5, FL(p_t) = -alpha (1 - p_t)^gamma log(p_t), with p_t = softmax(logits)_y.

  This is the softmax form FastReID's `focal_loss` uses (one alpha for every
  class), not the per-class sigmoid form of RetinaNet. alpha = 1, gamma = 0
  is plain cross-entropy.

  log p_t comes from log_softmax, not log(softmax + 1e-8) as in FastReID, so
  a confident sample is exact rather than floored; 1 - p_t is
  -expm1(log p_t), accurate when p_t is near 1. It is floored at 1e-30 before
  the power: for gamma < 1 the derivative gamma (1 - p_t)^(gamma - 1) is
  infinite at p_t = 1, and the floor (below any 1 - p_t float32 can resolve
  but 0) turns that into a zero gradient.

  Args:
    logits: (B, K); promoted to float32.
    labels: (B,) integer class ids in [0, K).
    alpha: the balance factor; 0.25 as in the paper.
    gamma: the focusing parameter; 2 as in the paper.
  """
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  log_pt = jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
  one_minus_pt = jnp.maximum(-jnp.expm1(log_pt), 1e-30)
  return jnp.mean(-alpha * one_minus_pt ** gamma * log_pt)
