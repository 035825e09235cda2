"""Conv, BatchNorm and IBN with PyTorch semantics: the one place CNN layers are defined.

Every backbone conv goes through `Conv` (and its pure core `conv2d`) for two
reasons: pretrained PyTorch weights then map one to one (explicit symmetric
padding, OIHW <-> HWIO is the only change), and the convolution itself is
swapped in one place (`impl`: XLA's, or `dot_conv`'s custom-VJP convs that
are faster on CPU) without touching any model's arithmetic; models only pass
their `conv_impl` field down to every `Conv`.

Parameter names follow flax (`kernel`, `scale`, `bias`; running statistics
`mean`, `var` in the `batch_stats` collection) so that the torch name map is a
fixed rename: weight <-> kernel (conv/linear) or scale (norm), running_mean <->
mean, running_var <-> var.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jreid.errors import ConfigError
from jreid.models import dot_conv
from jreid.models.sa import SemanticsAdaption

# PyTorch's BatchNorm defaults. Flax's momentum is the weight of the *old*
# running value, so torch momentum 0.1 is flax momentum 0.9. One difference
# stays: torch updates running_var with the unbiased batch variance, flax with
# the biased one (a factor n/(n-1), n = B*H*W, negligible for ReID batches).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

Initializer = Callable[..., Any]


def kaiming_fan_out() -> Initializer:
  """torchvision's `kaiming_normal_(mode="fan_out", nonlinearity="relu")`.

  N(0, 2 / (kh * kw * out_channels)), a plain (not truncated) normal; flax's
  `kaiming_normal` differs on both counts (fan_in, truncated). FastReID's
  `random_init` draws from the same distribution.
  """
  return nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
  return (v, v) if isinstance(v, int) else tuple(v)


def conv2d(x: jax.Array, kernel: jax.Array, *, stride=1, padding=0, dilation=1,
           groups: int = 1, impl: str = "xla") -> jax.Array:
  """`torch.nn.functional.conv2d` on NHWC inputs and HWIO kernels.

  `padding` is symmetric zero padding per spatial dim (int or (ph, pw)), as in
  torch, rather than flax's "SAME": with stride 2 "SAME" pads asymmetrically
  and would shift every feature map by a pixel relative to pretrained torch
  weights.

  `impl` (`CONV_IMPLS`) picks how it is computed and differentiated: "xla"
  is XLA's conv and conv backward; "dot_1x1" (`jreid.models.dot_conv`) runs
  1x1 convs as dots in every pass and keeps XLA for kxk convs; "dot" also
  computes kxk kernel gradients as per-tap dots. All compute the same
  function; "auto" must be resolved first (`resolve_conv_impl`).
  """
  args = (_pair(stride), _pair(padding), _pair(dilation), groups)
  if impl == "xla":
    return dot_conv.xla_conv(x, kernel, *args)
  if impl in ("dot", "dot_1x1"):
    return dot_conv.conv2d_dot(x, kernel, *args, "taps" if impl == "dot" else "xla")
  raise ConfigError(f"conv implementation {impl!r}: expected one of {CONV_IMPLS} "
                    "('auto' is resolved by resolve_conv_impl before models are built)")


CONV_IMPLS = ("xla", "dot_1x1", "dot")


def resolve_conv_impl(name: str, backend: str | None = None) -> str:
  """`model.conv_impl`: "auto" is the fastest measured for the backend.

  CPU: "dot_1x1" (ResNet-50 train step 1.8x XLA's, `benchmarks/train_step.py`);
  GPU/TPU: "xla" (cuDNN and the TPU compiler run conv gradients well).
  """
  if name == "auto":
    return "dot_1x1" if (backend or jax.default_backend()) == "cpu" else "xla"
  if name not in CONV_IMPLS:
    raise ConfigError(f"model.conv_impl={name!r}; choose 'auto' or one of {CONV_IMPLS}")
  return name


class Conv(nn.Module):
  """A 2-D convolution with torch's arguments; no bias unless asked (ResNets follow with BN).

  `sa_kernel` > 0 appends DASA's Semantics Adaption module (`jreid.models.sa`,
  identity-initialised) to the conv's output, so "an SA after every conv,
  before its BN" is one field here rather than a module in every block.

  Params: `kernel` (kh, kw, in/groups, features), with `use_bias` `bias`, with
  `sa_kernel` `sa/kernel` (k, k, features).
  """
  features: int
  kernel_size: int | tuple[int, int]
  stride: int | tuple[int, int] = 1
  padding: int | tuple[int, int] = 0
  dilation: int | tuple[int, int] = 1
  groups: int = 1
  use_bias: bool = False
  impl: str = "xla"
  sa_kernel: int = 0
  kernel_init: Initializer = kaiming_fan_out()
  bias_init: Initializer = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    in_features = x.shape[-1]
    if in_features % self.groups or self.features % self.groups:
      raise ValueError(f"channels {in_features} -> {self.features} not divisible "
                       f"by groups={self.groups}")
    kh, kw = _pair(self.kernel_size)
    kernel = self.param("kernel", self.kernel_init,
                        (kh, kw, in_features // self.groups, self.features))
    y = conv2d(x, kernel, stride=self.stride, padding=self.padding,
               dilation=self.dilation, groups=self.groups, impl=self.impl)
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (self.features,))
    if self.sa_kernel:
      y = SemanticsAdaption(self.sa_kernel, name="sa")(y)
    return y


def batch_norm(*, use_bias: bool = True, scale_init: Initializer = nn.initializers.ones,
               name: str | None = None) -> nn.BatchNorm:
  """A BatchNorm with torch's defaults; call it as `bn(x, use_running_average=not train)`.

  Params `scale` (init 1) and `bias` (init 0; absent with `use_bias=False`,
  which is how a frozen zero bias such as BNNeck's is expressed: nothing to
  freeze). Running `mean`/`var` live in `batch_stats`. The two-pass variance
  is used, as torch does, because E[x^2] - E[x]^2 loses precision in float32
  on post-ReLU maps with large means. `scale_init=zeros` makes a residual
  branch start as the identity (the non-local block's W).
  """
  return nn.BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, use_bias=use_bias,
                      scale_init=scale_init, use_fast_variance=False, name=name)


def instance_norm(*, name: str | None = None) -> nn.InstanceNorm:
  """torch's `InstanceNorm2d(c, affine=True)`: per sample and channel over H, W; params `scale`, `bias`."""
  return nn.InstanceNorm(epsilon=BN_EPSILON, use_fast_variance=False, name=name)


class IBN(nn.Module):
  """IBN-a (Pan et al., IBN-Net): InstanceNorm on the first half of the channels, BN on the rest.

  The split is `half = channels // 2` channels for InstanceNorm (affine, no
  running statistics, so it always normalises each sample over H, W, in
  training and at test time alike) and the remaining channels for BatchNorm;
  the two are concatenated back in channel order. Instance normalisation
  removes per-image style (colour, contrast), which is why it helps ReID across
  cameras and domains.

  Params: `IN/{scale,bias}` and `BN/{scale,bias}` (torch: `IN.weight`, `BN.weight`,
  ...); together exactly as many as the BatchNorm the layer replaces.
  The call signature matches `nn.BatchNorm` so blocks can use either.
  """

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
    half = x.shape[-1] // 2
    inst = instance_norm(name="IN")
    bn = batch_norm(name="BN")
    return jnp.concatenate(
        [inst(x[..., :half]), bn(x[..., half:], use_running_average=use_running_average)],
        axis=-1)
