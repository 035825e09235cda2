"""DINO's projection head (Caron et al. 2021, `vision_transformer.DINOHead`), as TransReID-SSL uses it.

  x -> Linear(hidden) -> GELU -> Linear(hidden) -> GELU -> Linear(bottleneck)   (`mlp.0`, `mlp.2`, `mlp.4`)
    -> L2-normalise (F.normalize: x / max(||x||, 1e-12))
    -> weight-normalised Linear(out_dim), no bias                              (`last_layer.weight_{g,v}`)

The last layer's weight is g * v / ||v||, the norm taken per output unit
(torch's `weight_norm(dim=0)` over the (out, in) weight; over axis 0 of the
(bottleneck, out_dim) `weight_v` here, torch's `norm_except_dim`, no epsilon).
With `norm_last_layer=True` (DINO's default, which TransReID-SSL keeps) g is
filled with 1 and `requires_grad=False`; here it is then no parameter at all,
a constant 1, so no optimiser, weight decay or EMA can move it: every output
unit's weight column has norm exactly 1 and the logits are cosines in [-1, 1].
A DINO-layout export writes `head.last_layer.weight_g` as ones.
`norm_last_layer=False` makes g the trainable param `last_layer/weight_g`
(1, out_dim), initialised to 1.

Init: the MLP as DINO's `_init_weights` (trunc normal std 0.02, zero
biases; the same truncated-normal initialiser as jreid's ViT). `weight_v` is
created after `_init_weights` ran in DINO, so it keeps torch's default Linear
init, U(-1/sqrt(bottleneck), 1/sqrt(bottleneck)): the forward does not see
v's scale, but the size of an optimiser step relative to ||v|| does.

DINO freezes the last layer for the first epoch (`cancel_gradients_last_layer`:
every parameter named `last_layer` gets no gradient, hence no AdamW step, no
weight decay, no moment update). That is jreid's timed freeze:
`optim.freeze = LAST_LAYER`, `optim.freeze_epochs = 1` (`jreid.train.durations`
resolves it to the steps of one epoch; `jreid.train.param_groups.freeze_for`
holds the group, its optimiser state starting when it unfreezes, as torch's).

Params: `mlp_0`, `mlp_2`, ..., `mlp_{2(layers-1)}` `/{kernel, bias}` (the
torch Sequential indices; one layer: `mlp`), `last_layer/weight_v`
[, `last_layer/weight_g`].
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jreid.errors import ConfigError
from jreid.losses.margin import l2_normalize  # torch's F.normalize, finite gradient at 0
from jreid.models.backbones.vit import gelu

# The timed-freeze pattern of DINO's first epoch, wherever the head sits in the tree.
LAST_LAYER = r"(?:.*/)?last_layer/.*"
_INIT = nn.initializers.truncated_normal(stddev=0.02)
# torch.nn.Linear's default (kaiming_uniform, a=sqrt 5): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
TORCH_LINEAR_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def weight_norm(v: jax.Array, g: jax.Array | float = 1.0) -> jax.Array:
  """g * v / ||v||, the norm over the input axis (0) of a (in, out) kernel: one per output unit.

  In float32 whatever v's dtype (a bfloat16 forward would otherwise sum the
  squares of `bottleneck` entries in bfloat16).
  """
  v = v.astype(jnp.float32)
  return g * v / jnp.sqrt(jnp.sum(jnp.square(v), axis=0, keepdims=True))


class WeightNormLinear(nn.Module):
  """A bias-free linear layer with torch's weight normalisation; g fixed at 1 when `norm_fixed`."""
  features: int
  norm_fixed: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    v = self.param("weight_v", TORCH_LINEAR_INIT, (x.shape[-1], self.features))
    g = 1.0 if self.norm_fixed else self.param("weight_g", nn.initializers.ones, (1, self.features))
    return x @ weight_norm(v, g).astype(x.dtype)


class DINOHead(nn.Module):
  """(..., D) backbone features -> (..., out_dim) logits (cosines when the norm is fixed)."""
  out_dim: int
  hidden: int = 2048
  bottleneck: int = 256
  layers: int = 3
  norm_last_layer: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.layers < 1:
      raise ConfigError(f"DINO head layers={self.layers}; it needs at least 1")
    dense = lambda features, name: nn.Dense(features, kernel_init=_INIT, name=name)
    if self.layers == 1:
      x = dense(self.bottleneck, "mlp")(x)
    else:
      for i in range(self.layers - 1):
        x = gelu(dense(self.hidden, f"mlp_{2 * i}")(x))
      x = dense(self.bottleneck, f"mlp_{2 * (self.layers - 1)}")(x)
    x = l2_normalize(x)
    return WeightNormLinear(self.out_dim, self.norm_last_layer, name="last_layer")(x)
