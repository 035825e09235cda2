"""The non-local block (Wang et al., "Non-local Neural Networks", 2018) in FastReID's form.

z = x + W(y),  y_i = (1/N) sum_j (theta(x_i) . phi(x_j)) g(x_j)

the "dot product" pairwise function: no softmax, the affinities are divided by
the number of positions N = H*W. theta, phi and g are 1x1 convs (with bias, as
torch's default) to C/2 channels; W is a 1x1 conv back to C followed by a BN
whose scale and bias start at zero, so at initialisation W(y) = 0 and the
block is the identity: inserting it into a pretrained ResNet leaves that
network's function unchanged until training moves the BN scale.

Params (torch name in brackets, FastReID's `Non_local`):
  g/{kernel,bias}        [g.weight, g.bias]
  theta/{kernel,bias}    [theta.weight, theta.bias]
  phi/{kernel,bias}      [phi.weight, phi.bias]
  W_conv/{kernel,bias}   [W.0.weight, W.0.bias]
  W_bn/{scale,bias}      [W.1.weight, W.1.bias]   (batch_stats W_bn/{mean,var})
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jreid.models.layers import Conv, batch_norm


class NonLocal(nn.Module):
  """`(x, *, train) -> x + W(y)` on NHWC maps; `reduction` 2 gives FastReID's C/2 inner width."""
  reduction: int = 2
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    b, h, w, c = x.shape
    inner = c // self.reduction
    flat = lambda t: t.reshape(b, h * w, inner)
    conv = functools.partial(Conv, impl=self.conv_impl)
    theta = flat(conv(inner, 1, use_bias=True, name="theta")(x))
    phi = flat(conv(inner, 1, use_bias=True, name="phi")(x))
    g = flat(conv(inner, 1, use_bias=True, name="g")(x))
    affinity = jnp.einsum("bic,bjc->bij", theta, phi) / (h * w)
    y = jnp.einsum("bij,bjc->bic", affinity, g).reshape(b, h, w, inner)
    y = conv(c, 1, use_bias=True, name="W_conv")(y)
    bn = batch_norm(scale_init=nn.initializers.zeros, name="W_bn")
    return x + bn(y, use_running_average=not train)
