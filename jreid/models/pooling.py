"""Aggregation of a feature map (B, H, W, C) into one vector per image (B, C).

`POOLINGS` maps config names to module classes: "avg" takes no arguments,
"gem" takes `p` and `learnable_p`.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class AvgPool(nn.Module):
  """Global average pooling (BoT's GAP)."""

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.mean(x, axis=(1, 2))


class GeM(nn.Module):
  """Generalised mean pooling, (mean_hw max(x, eps)^p)^(1/p) (Radenovic et al.).

  p = 1 is average pooling and p -> inf approaches max pooling; p = 3 is the
  FastReID/DASA default. The clamp at `eps` keeps x^p and its gradient with
  respect to p (x^p log x) finite where ReLU outputs zeros. With `learnable_p`
  p is a param named `p` of shape (1,) (as FastReID's `GeneralizedMeanPoolingP`)
  trained with the rest of the model; otherwise it is a constant.
  """
  p: float = 3.0
  learnable_p: bool = False
  eps: float = 1e-6

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    p = self.param("p", nn.initializers.constant(self.p), (1,)) if self.learnable_p else self.p
    return jnp.mean(jnp.maximum(x, self.eps) ** p, axis=(1, 2)) ** (1.0 / p)


POOLINGS = {"avg": AvgPool, "gem": GeM}
