"""A convolution whose gradients are matrix products: fast where XLA's conv backward is slow (CPU).

XLA:CPU runs a conv's forward pass about as fast as PyTorch, but its kernel
gradient (a "backward filter" convolution) 5-25x slower than the same sum
written as dot products (`PERF_NOTES.md`: 11 of a ResNet-50 step's 14 s). A
kxk conv's kernel gradient is, for each tap (i, j),

    dW[i, j] = X_ij^T G,  X_ij = the input window seen by tap (i, j), (N*OH*OW, Cin)
                          G    = the output gradient,                 (N*OH*OW, Cout)

so `conv2d_dot` keeps XLA's forward and input gradient and computes dW as
kh*kw strided slices and dots, or, where the input has few channels (the 7x7
stem on RGB), as one dot over the stacked slices (im2col), which keeps the
contraction wide. A 1x1 stride-1 conv is a plain dot in both passes: its
input gradient is G W^T. Groups (ResNeXt, ResNeSt, depth-wise) become a
batched dot over the group axis.

The numbers are the same convolution: sums are reordered, so results agree
with `jax.lax.conv_general_dilated` to float rounding (tests: 1e-5 relative).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

Pair = tuple[int, int]
# Input channels per group below which the kernel gradient is one im2col dot
# rather than one dot per tap: a 3-channel tap dot is too thin to run well.
IM2COL_MAX_CHANNELS = 16


def xla_conv(x: jax.Array, kernel: jax.Array, stride: Pair, padding: Pair, dilation: Pair,
             groups: int) -> jax.Array:
  """The reference: NHWC x HWIO with symmetric zero padding, as torch's conv2d."""
  (ph, pw) = padding
  return lax.conv_general_dilated(
      x, kernel, window_strides=stride, padding=((ph, ph), (pw, pw)), rhs_dilation=dilation,
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def _is_pointwise(kernel_shape, stride: Pair, padding: Pair, groups: int) -> bool:
  return kernel_shape[:2] == (1, 1) and stride == (1, 1) and padding == (0, 0) and groups == 1


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def conv2d_dot(x: jax.Array, kernel: jax.Array, stride: Pair, padding: Pair, dilation: Pair,
               groups: int) -> jax.Array:
  """Same values as `xla_conv`; differentiating it uses the dot-product rules below."""
  if _is_pointwise(kernel.shape, stride, padding, groups):
    return _dot(x, kernel[0, 0], x.dtype)
  return xla_conv(x, kernel, stride, padding, dilation, groups)


def _forward(x, kernel, stride, padding, dilation, groups):
  return conv2d_dot(x, kernel, stride, padding, dilation, groups), (x, kernel)


def _backward(stride, padding, dilation, groups, residuals, g):
  x, kernel = residuals
  if _is_pointwise(kernel.shape, stride, padding, groups):
    dx = _dot(g, kernel[0, 0].T, x.dtype)
  else:
    _, input_vjp = jax.vjp(lambda x_: xla_conv(x_, kernel, stride, padding, dilation, groups), x)
    (dx,) = input_vjp(g)
  dkernel = kernel_gradient(x, g, kernel.shape, stride, padding, dilation, groups)
  return dx, dkernel.astype(kernel.dtype)


conv2d_dot.defvjp(_forward, _backward)


def _accumulator(dtype) -> jnp.dtype:
  """float32 sums for bfloat16/float16/float32 operands (as XLA's convs), float64 for float64."""
  return jnp.promote_types(dtype, jnp.float32)


def _dot(a: jax.Array, b: jax.Array, dtype) -> jax.Array:
  """a (..., K) @ b (K, N) with at least float32 accumulation, in `dtype`."""
  return jnp.matmul(a, b, preferred_element_type=_accumulator(a.dtype)).astype(dtype)


def _tap(xp: jax.Array, i: int, j: int, out_hw: Pair, stride: Pair, dilation: Pair) -> jax.Array:
  """The (N, OH, OW, C) input values that kernel tap (i, j) multiplies, from the padded input."""
  (oh, ow), (sh, sw), (dh, dw) = out_hw, stride, dilation
  start = (0, i * dh, j * dw, 0)
  limit = (xp.shape[0], i * dh + (oh - 1) * sh + 1, j * dw + (ow - 1) * sw + 1, xp.shape[3])
  return lax.slice(xp, start, limit, (1, sh, sw, 1))


def kernel_gradient(x: jax.Array, g: jax.Array, kernel_shape, stride: Pair, padding: Pair,
                    dilation: Pair, groups: int) -> jax.Array:
  """dL/dkernel (kh, kw, Cin/groups, Cout) of a conv with input `x` and output gradient `g`.

  Accumulated (and returned) in at least float32, whatever the inputs' dtype.
  """
  kh, kw, cin_g, cout = kernel_shape
  n, oh, ow, _ = g.shape
  m, cout_g = n * oh * ow, cout // groups
  (ph, pw) = padding
  xp = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0))) if ph or pw else x
  g_groups = g.reshape(m, groups, cout_g)
  accumulate = _accumulator(x.dtype)
  taps = [_tap(xp, i, j, (oh, ow), stride, dilation).reshape(m, groups, cin_g)
          for i in range(kh) for j in range(kw)]
  if len(taps) > 1 and cin_g < IM2COL_MAX_CHANNELS:
    patches = jnp.concatenate(taps, axis=-1)  # (m, groups, kh*kw*cin_g), tap-major
    grad = jnp.einsum("mgk,mgo->gko", patches, g_groups, preferred_element_type=accumulate)
    grad = grad.reshape(groups, kh, kw, cin_g, cout_g)
  else:
    grad = jnp.stack([jnp.einsum("mgc,mgo->gco", tap, g_groups,
                                 preferred_element_type=accumulate) for tap in taps])
    grad = grad.reshape(kh, kw, groups, cin_g, cout_g).transpose(2, 0, 1, 3, 4)
  # (groups, kh, kw, cin_g, cout_g) -> HWIO with output channel = group * cout_g + o
  return grad.transpose(1, 2, 3, 0, 4).reshape(kh, kw, cin_g, cout)
