"""Exponential moving averages of parameter trees (MoCo's key encoder, DINO's teacher)."""
from __future__ import annotations

import jax


def update(average, online, momentum: float):
  """momentum * average + (1 - momentum) * online, leaf by leaf; no gradient flows into it."""
  return jax.tree.map(lambda a, o: momentum * a + (1.0 - momentum) * jax.lax.stop_gradient(o),
                      average, online)
