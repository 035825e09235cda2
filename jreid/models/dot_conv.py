"""Convolutions whose gradients are matrix products: faster where XLA's conv backward is slow (CPU).

A conv's kernel gradient is, for each tap (i, j) of the kernel,

    dW[i, j] = X_ij^T G,  X_ij = the input window seen by tap (i, j), (N*OH*OW, Cin)
                          G    = the output gradient,                 (N*OH*OW, Cout)

`conv2d_dot(..., kxk=...)` is a custom-VJP conv built on that identity:

  * 1x1 convs without padding (every ResNet bottleneck's conv1/conv3 and the
    downsample shortcut) are plain dots in all three passes: the forward is
    X W on the (strided) input, the input gradient G W^T (spread back onto
    the strided grid by interior padding), the kernel gradient X^T G from
    the input saved channel-major.
  * kxk convs keep XLA's forward and input gradient; their kernel gradient is
    XLA's (`kxk="xla"`) or kh*kw strided slices and dots (`kxk="taps"`; one
    im2col dot over the stacked slices where the input has few channels, the
    7x7 stem on RGB, to keep the contraction wide).

Measured on the 2-core CPU (jax 0.10.2, `benchmarks/train_step.py`): the dot
1x1 passes make the ResNet-50 train step ~2x faster than XLA's convs, while
the tap kernel gradients are slower than XLA's own for 3x3 and 7x7 convs
inside a full step, so `conv_impl="auto"` on CPU is 1x1 dots + XLA kxk
("dot_1x1"), and "dot" (every kernel gradient as dots) stays for comparison.

The numbers are the same convolution: sums are reordered, so results agree
with `jax.lax.conv_general_dilated` to float rounding (tests: 1e-5 relative).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

Pair = tuple[int, int]
# Input channels per group below which the tap kernel gradient is one im2col
# dot rather than one dot per tap: a 3-channel tap dot is too thin to run well.
IM2COL_MAX_CHANNELS = 16


def xla_conv(x: jax.Array, kernel: jax.Array, stride: Pair, padding: Pair, dilation: Pair,
             groups: int) -> jax.Array:
  """The reference: NHWC x HWIO with symmetric zero padding, as torch's conv2d."""
  (ph, pw) = padding
  return lax.conv_general_dilated(
      x, kernel, window_strides=stride, padding=((ph, ph), (pw, pw)), rhs_dilation=dilation,
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def _is_pointwise(kernel_shape, padding: Pair, groups: int) -> bool:
  return tuple(kernel_shape[:2]) == (1, 1) and padding == (0, 0) and groups == 1


def _subsample(x: jax.Array, stride: Pair) -> jax.Array:
  """The pixels a strided 1x1 conv reads: rows and columns 0, s, 2s, ..."""
  if stride == (1, 1):
    return x
  return lax.slice(x, (0, 0, 0, 0), x.shape, (1, *stride, 1))


def _upsample(dx: jax.Array, stride: Pair, shape) -> jax.Array:
  """The inverse spread of `_subsample`: values back on the strided grid of `shape`, zeros elsewhere."""
  if stride == (1, 1):
    return dx
  (sh, sw), (_, oh, ow, _) = stride, dx.shape
  high_h, high_w = shape[1] - (oh - 1) * sh - 1, shape[2] - (ow - 1) * sw - 1
  zero = jnp.zeros((), dx.dtype)
  return lax.pad(dx, zero, ((0, 0, 0), (0, high_h, sh - 1), (0, high_w, sw - 1), (0, 0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def conv2d_dot(x: jax.Array, kernel: jax.Array, stride: Pair, padding: Pair, dilation: Pair,
               groups: int, kxk: str = "xla") -> jax.Array:
  """Same values as `xla_conv`; differentiating it uses the dot-product rules below."""
  if _is_pointwise(kernel.shape, padding, groups):
    return _dot(_subsample(x, stride), kernel[0, 0], x.dtype)
  return xla_conv(x, kernel, stride, padding, dilation, groups)


def _forward(x, kernel, stride, padding, dilation, groups, kxk):
  y = conv2d_dot(x, kernel, stride, padding, dilation, groups, kxk)
  if _is_pointwise(kernel.shape, padding, groups):
    # Saved channel-major, so the kernel gradient X^T G is a plain (C, M) @ (M, O)
    # product. Saved row-major, XLA:CPU transposes an operand inside the
    # backward pass, fused with BN's backward at poor memory locality (1.4 s of
    # a 6 s ResNet-50 step); here the transpose happens once, in the forward.
    x_channels_major = _subsample(x, stride).reshape(-1, x.shape[-1]).T
    input_hw = jnp.zeros((0, *x.shape[1:3], 0), x.dtype)  # residuals are arrays: carries (H, W)
    return y, (x_channels_major, input_hw, kernel)
  return y, (x, None, kernel)


def _backward(stride, padding, dilation, groups, kxk, residuals, g):
  x, input_hw, kernel = residuals
  if _is_pointwise(kernel.shape, padding, groups):
    x_shape = (g.shape[0], *input_hw.shape[1:3], x.shape[0])
    dx = _upsample(_dot(g, kernel[0, 0].T, x.dtype), stride, x_shape)
    return dx, _dot(x, g.reshape(-1, g.shape[-1]), kernel.dtype)[None, None]
  _, vjp = jax.vjp(lambda x_, k_: xla_conv(x_, k_, stride, padding, dilation, groups), x, kernel)
  if kxk == "xla":
    dx, dkernel = vjp(g)
  else:
    dx, _ = vjp(g)  # the unused XLA kernel gradient is removed by XLA's dead-code elimination
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


def _gradient_product(g: jax.Array, x: jax.Array, accumulate) -> jax.Array:
  """(groups, Cin_g, Cout_g) = per group X^T G over m, computed as G^T X with G the left operand.

  g: (m, groups, Cout_g), x: (m, groups, Cin_g). Written as an explicit
  dot_general because which operand XLA transposes follows the operand order.
  """
  dims = (((0,), (0,)), ((1,), (1,)))  # contract m, batch over groups
  product = lax.dot_general(g, x, dims, preferred_element_type=accumulate)  # (groups, o, c)
  return product.swapaxes(1, 2)


def kernel_gradient(x: jax.Array, g: jax.Array, kernel_shape, stride: Pair, padding: Pair,
                    dilation: Pair, groups: int) -> jax.Array:
  """dL/dkernel (kh, kw, Cin/groups, Cout) of a conv with input `x` and output gradient `g`.

  Accumulated (and returned) in at least float32, whatever the inputs' dtype.
  The products are written G^T X (not X^T G): XLA:CPU transposes the left
  operand, and transposing the gradient measured faster than transposing
  the input, whose producers XLA would recompute inside the transpose.
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
    grad = _gradient_product(g_groups, patches, accumulate)
    grad = grad.reshape(groups, kh, kw, cin_g, cout_g)
  else:
    grad = jnp.stack([_gradient_product(g_groups, tap, accumulate) for tap in taps])
    grad = grad.reshape(kh, kw, groups, cin_g, cout_g).transpose(2, 0, 1, 3, 4)
  # (groups, kh, kw, cin_g, cout_g) -> HWIO with output channel = group * cout_g + o
  return grad.transpose(1, 2, 3, 0, 4).reshape(kh, kw, cin_g, cout)
