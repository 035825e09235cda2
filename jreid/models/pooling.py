"""Aggregation of a feature map (B, H, W, C) into one vector per image (B, C).

`POOLINGS` maps config names to module classes: "avg", "max", "attention"
and "identity" take no arguments, "gem" takes `p` and `learnable_p`.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jreid.errors import ConfigError


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


class MaxPool(nn.Module):
  """Global max pooling: the strongest response of each channel anywhere in the map."""

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.max(x, axis=(1, 2))


class AttentionPool(nn.Module):
  """Softmax-weighted average over locations, weights from a learned 1x1 scoring conv.

  Lets the model down-weight background and occluders instead of averaging
  them in; with a zero-initialised scorer it starts as average pooling.
  Params: `score/kernel` (C, 1), `score/bias` (1,).
  """

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scores = nn.Dense(1, kernel_init=nn.initializers.zeros, name="score")(x)  # (B, H, W, 1)
    weights = jax.nn.softmax(scores.reshape(x.shape[0], -1), axis=-1)
    return jnp.einsum("bl,blc->bc", weights, x.reshape(x.shape[0], -1, x.shape[-1]))


class IdentityPool(nn.Module):
  """For backbones that already return one vector per image (a ViT's CLS token)."""

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 2:
      raise ConfigError(f"model.pooling='identity' needs (batch, channels) features, got {x.shape}; "
                        "use 'avg', 'max', 'gem' or 'attention' for feature maps")
    return x


POOLINGS = {"avg": AvgPool, "max": MaxPool, "gem": GeM, "attention": AttentionPool,
            "identity": IdentityPool}


def stripe_bounds(height: int, parts: int) -> list[tuple[int, int]]:
  """Row ranges [start, end) of `parts` horizontal stripes of a map `height` rows high.

  torch's AdaptiveAvgPool2d((parts, 1)) bins, which PCB uses:
  start = floor(i * H / p), end = ceil((i + 1) * H / p). When p divides H these
  are equal, disjoint stripes; otherwise neighbouring stripes share a row
  (H = 16, p = 3: [0, 6), [5, 11), [10, 16)), where FastReID's MGN `torch.chunk`
  would give unequal stripes (6, 6, 4 rows). Shared by MGN and PCB, so both
  split alike; at the published sizes (24 or 16 rows and p = 2, 6) they agree
  with the papers.
  """
  if not 1 <= parts <= height:
    raise ConfigError(f"cannot split a map {height} rows high into {parts} stripes")
  return [(i * height // parts, -(-(i + 1) * height // parts)) for i in range(parts)]


def horizontal_stripes(x: jax.Array, parts: int) -> list[jax.Array]:
  """The `parts` stripes (B, h_i, W, C) of a (B, H, W, C) map, top to bottom (see `stripe_bounds`)."""
  return [x[:, start:end] for start, end in stripe_bounds(x.shape[1], parts)]
