"""DASA's Semantics Adaption (SA) module: a depth-wise kxk conv after a frozen conv, before its BN.

The pre-trained conv's human semantics are kept (frozen); each domain
re-weights them spatially per channel with a large depth-wise kernel (the
paper's 5x5: a 1x1 one, which mixes nothing spatially, does not help).
The kernel starts as the identity (a dirac at the centre), so a network with
fresh SA modules computes exactly what the pre-trained one did.

The depth-wise conv is written as k*k shifted multiply-adds rather than
XLA's grouped convolution: the same numbers, 2-10x faster with its gradients
on CPU (grouped convs with one channel per group are a slow path there), and
XLA fuses the taps on GPU/TPU as well.

Params: `kernel` (k, k, channels), no bias.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def dirac_init(key, shape, dtype=jnp.float32) -> jax.Array:
  """Zeros with a 1 at the kernel centre: the identity depth-wise conv (torch's nn.init.dirac_)."""
  del key
  k = shape[0]
  return jnp.zeros(shape, dtype).at[k // 2, k // 2].set(1)


def depthwise_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-1 'same' depth-wise conv of NHWC `x` with a (k, k, C) kernel, odd k, zero padding."""
  k = kernel.shape[0]
  if k % 2 == 0 or kernel.shape[1] != k:
    raise ValueError(f"SA kernel must be square with an odd side, got {kernel.shape[:2]}")
  pad = k // 2
  height, width = x.shape[1:3]
  padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  kernel = kernel.astype(x.dtype)
  out = jnp.zeros_like(x)
  for i in range(k):
    for j in range(k):
      out = out + padded[:, i:i + height, j:j + width, :] * kernel[i, j]
  return out


class SemanticsAdaption(nn.Module):
  """A depth-wise `kernel_size` x `kernel_size` conv, identity-initialised, no bias."""
  kernel_size: int = 5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", dirac_init, (self.kernel_size, self.kernel_size, x.shape[-1]))
    return depthwise_conv(x, kernel)
