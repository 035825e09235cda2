"""ResNet-18/34/50/101/152 and ResNeXt (torchvision v1.5 layout) with FastReID's ReID options.

Options: `last_stride` (1 keeps layer4 at stride 16, the BoT trick for finer
maps), `ibn`, `non_local`, `width` (base channels; 64 is the published
network, 8 or 16 give tiny CPU/test variants with every stage scaled alike).

`ibn=True` or `"a"`: IBN-a as in FastReID's resnet_ibn_a: in layer1..layer3 the
bn1 of *every* block is an `IBN`, layer4 and the stem keep plain BN. Same
parameter count as the plain network.

`ibn="b"`: IBN-b as in the official IBN-Net `resnet50_ibn_b` (Pan et al. 2018,
ibn_cfg=('b', 'b', None, None)): the stem's bn1 is an affine InstanceNorm
instead of BN, and the *last* block of layer1 and of layer2 applies an affine
InstanceNorm (`IN`) to the sum `branch + shortcut`, before the final ReLU; all
other norms are BN. IN removes appearance (style) variation without touching
the residual branches' BNs. Extra params over plain: the stem IN has as many as
the BN it replaces; the two block INs add 2*4w + 2*8w (1,536 for ResNet-50,
w = 64; 2*w + 2*2w = 384 for ResNet-18/34).

`non_local=True`: FastReID's non-local blocks (`non_local.NonLocal`) after the
last `non_local_stages[i]` blocks of stage i; each entry of `BACKBONES` fixes
FastReID's positions for its depth ((0, 2, 3, 0) for 50, (0, 2, 9, 0) for 101;
FastReID defines none for 18/34/152, so asking for them there is an error).

ResNeXt (`groups` > 1): the 3x3 conv of each Bottleneck is grouped, with
`groups * width_per_group * planes / 64` channels (32x4d: 2*planes), as
torchvision's `resnext50_32x4d`. In scaled variants (`width` < 64) the number
of groups scales with `width` (`groups * width / 64`, at least 1) so that each
group keeps its published width.

Parameter tree (flax names; the torch name is in brackets), for a Bottleneck:

  conv1/kernel                       [conv1.weight]
  bn1/{scale,bias}                   [bn1.weight, bn1.bias]
  layer{i}_{j}/conv1/kernel          [layer{i}.{j}.conv1.weight]
  layer{i}_{j}/bn1/{scale,bias}      [layer{i}.{j}.bn1.*]
  layer{i}_{j}/bn1/IN/{scale,bias}   [layer{i}.{j}.bn1.IN.*]   (ibn, i <= 3)
  layer{i}_{j}/bn1/BN/{scale,bias}   [layer{i}.{j}.bn1.BN.*]   (ibn, i <= 3)
  layer{i}_{j}/conv2, bn2, conv3, bn3
  layer{i}_{j}/downsample_conv/kernel   [layer{i}.{j}.downsample.0.weight]
  layer{i}_{j}/downsample_bn/{scale,bias} [layer{i}.{j}.downsample.1.*]
  layer{i}_{j}/IN/{scale,bias}       [layer{i}.{j}.IN.*]       (ibn="b", last block, i <= 2)
  NL_{i}_{k}/...                     [NL_{i}.{k}.*]            (non_local; see non_local.py)

with i in 1..4 and j from 0; BasicBlock has conv1, bn1, conv2, bn2 and the same
downsample names. `batch_stats` mirrors every BN path with `mean`/`var`
[running_mean/running_var]. Kernels are HWIO (torch OIHW).

With `ibn="b"` the stem's `bn1/{scale,bias}` is the InstanceNorm [bn1.weight,
bn1.bias] and has no batch_stats. `NL_{i}_{k}` is the k-th non-local block of
stage i, applied after block layer{i}_{n - m + k} (n blocks, m non-local).
"""
from __future__ import annotations

import functools
import math
from typing import ClassVar, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jreid.errors import ConfigError
from jreid.models.backbones.non_local import NonLocal
from jreid.models.layers import IBN, Conv, batch_norm, instance_norm

IBNOption = Union[bool, str, None]


def ibn_kind(ibn: IBNOption) -> str | None:
  """`"a"`, `"b"` or None from the `ibn` option; True means IBN-a, as it always has.

  `""` also means none, so a string-typed config field (which a locked
  ConfigDict needs to hold "b") has a value for "off".
  """
  if ibn is True or ibn == "a":
    return "a"
  if ibn == "b":
    return "b"
  if ibn is False or ibn is None or ibn == "":
    return None
  raise ConfigError(f"model.ibn must be False, True, 'a' or 'b', got {ibn!r}")


def _norm1(ibn: bool) -> nn.Module:
  """The first norm of a block: IBN-a where asked, BN otherwise; same name either way."""
  return IBN(name="bn1") if ibn else batch_norm(name="bn1")


def _merge(y: jax.Array, shortcut: jax.Array, ibn_b: bool) -> jax.Array:
  """relu(branch + shortcut), with IBN-b's affine InstanceNorm on the sum where asked."""
  y = y + shortcut
  if ibn_b:
    y = instance_norm(name="IN")(y)
  return nn.relu(y)


def _shortcut(x: jax.Array, features: int, stride: int, train: bool, conv_impl: str,
              sa_kernel: int) -> jax.Array:
  """Identity, or a strided 1x1 conv + BN where the shape changes (torchvision's rule).

  Called inside a block's compact `__call__`, so the modules belong to the block.
  """
  if stride == 1 and x.shape[-1] == features:
    return x
  x = Conv(features, 1, stride=stride, impl=conv_impl, sa_kernel=sa_kernel,
           name="downsample_conv")(x)
  return batch_norm(name="downsample_bn")(x, use_running_average=not train)


class BasicBlock(nn.Module):
  """3x3 -> 3x3 residual block (ResNet-18/34); the stride sits on conv1.

  `ibn`: IBN-a in bn1; `ibn_b`: InstanceNorm after the addition. `groups` and
  `inner` exist for a common signature with Bottleneck and must stay default.
  """
  planes: int
  stride: int = 1
  ibn: bool = False
  ibn_b: bool = False
  groups: int = 1
  inner: int | None = None
  conv_impl: str = "xla"
  sa_kernel: int = 0
  expansion: ClassVar[int] = 1

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if self.groups != 1 or self.inner not in (None, self.planes):
      raise ConfigError("BasicBlock has no grouped (ResNeXt) form")
    use_avg = not train
    conv = functools.partial(Conv, impl=self.conv_impl, sa_kernel=self.sa_kernel)
    y = conv(self.planes, 3, stride=self.stride, padding=1, name="conv1")(x)
    y = nn.relu(_norm1(self.ibn)(y, use_running_average=use_avg))
    y = conv(self.planes, 3, padding=1, name="conv2")(y)
    y = batch_norm(name="bn2")(y, use_running_average=use_avg)
    shortcut = _shortcut(x, self.planes, self.stride, train, self.conv_impl, self.sa_kernel)
    return _merge(y, shortcut, self.ibn_b)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 -> 1x1 (x4) block (ResNet-50/101/152, ResNeXt); v1.5: the stride sits on the 3x3 conv.

  `inner` is the width of the 1x1 -> 3x3 part (default `planes`; ResNeXt's is
  wider) and `groups` the 3x3 conv's groups; the output is `4 * planes` either
  way. `ibn`: IBN-a in bn1; `ibn_b`: InstanceNorm after the addition.
  """
  planes: int
  stride: int = 1
  ibn: bool = False
  ibn_b: bool = False
  groups: int = 1
  inner: int | None = None
  conv_impl: str = "xla"
  sa_kernel: int = 0
  expansion: ClassVar[int] = 4

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    use_avg = not train
    out_features = self.planes * self.expansion
    inner = self.inner or self.planes
    conv = functools.partial(Conv, impl=self.conv_impl, sa_kernel=self.sa_kernel)
    y = conv(inner, 1, name="conv1")(x)
    y = nn.relu(_norm1(self.ibn)(y, use_running_average=use_avg))
    y = conv(inner, 3, stride=self.stride, padding=1, groups=self.groups, name="conv2")(y)
    y = nn.relu(batch_norm(name="bn2")(y, use_running_average=use_avg))
    y = conv(out_features, 1, name="conv3")(y)
    y = batch_norm(name="bn3")(y, use_running_average=use_avg)
    shortcut = _shortcut(x, out_features, self.stride, train, self.conv_impl, self.sa_kernel)
    return _merge(y, shortcut, self.ibn_b)


def stem_max_pool(x: jax.Array, ceil_mode: bool) -> jax.Array:
  """3x3 stride-2 max pooling of the stem, in FastReID's or torchvision's form.

  FastReID uses `MaxPool2d(3, stride=2, ceil_mode=True)` without padding;
  torchvision uses `MaxPool2d(3, stride=2, padding=1)`. For even sizes both
  halve the map but the windows are offset by one pixel, so outputs differ;
  `ceil_mode=True` reproduces FastReID, False reproduces torchvision. Ceil
  mode is expressed as -inf padding at the far end only, just enough for the
  last window torch keeps (a window must start inside the input).

  The pool is `lax.reduce_window` itself (what `nn.max_pool` computes): the
  ONNX exporter (jax2onnx, `jreid.convert.onnx`) replaces `nn.max_pool`
  while it traces, with a version that takes only "SAME"/"VALID" padding.
  """
  if not ceil_mode:
    pads = [(1, 1), (1, 1)]
  else:
    pads = []
    for n in x.shape[1:3]:
      out = math.ceil(max(n - 3, 0) / 2) + 1
      if (out - 1) * 2 >= n:
        out -= 1
      pads.append((0, max((out - 1) * 2 + 3 - n, 0)))
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                           ((0, 0), *pads, (0, 0)))


Block = tuple[int, int]  # (stage 1..4, block index from 0), as in `layer{stage}_{index}`


class ResNet(nn.Module):
  """A ResNet trunk without the classifier: `(x, *, train) -> (layer4 map, intermediates)`.

  Input NHWC float images. `intermediates` holds `stem` (after the max pool,
  stride 4, as detectron2's stem) and `layer1`..`layer4` (strides 4, 8, 16,
  and 16 or 32 by `last_stride`; after the stage's non-local blocks).

  `first`/`last` run only a range of blocks, so multi-branch models (MGN)
  reuse this code and its parameter names for a shared trunk and per-branch
  copies of the later blocks: `last=(3, 0)` stops after layer3_0 and returns
  that map; `first=(3, 1)` skips the stem and everything before layer3_1 and
  takes that map as input. Blocks keep their full-network names, strides and
  IBN / non-local positions; `intermediates` holds only the stages completed
  within the range. The defaults run the whole network.

  `sa_kernel` > 0 puts DASA's SA module (`jreid.models.sa`) after every conv
  of the stages in `sa_stages` (0 = the stem conv, 1..4 = layer1..layer4,
  downsample convs included: 53 modules in ResNet-50), before its BN.
  """
  block: type[BasicBlock] | type[Bottleneck]
  stage_sizes: Sequence[int]
  width: int = 64
  last_stride: int = 1
  ibn: IBNOption = False
  ceil_mode_pool: bool = True
  non_local: bool = False
  non_local_stages: Sequence[int] = (0, 0, 0, 0)
  groups: int = 1
  width_per_group: int = 64
  first: Block | None = None
  last: Block | None = None
  conv_impl: str = "xla"
  sa_kernel: int = 0
  sa_stages: Sequence[int] = (0, 1, 2, 3, 4)
  # The stem's conv and norm by name: DASA's camera routing compares the moments of the conv's
  # output with the norm's running statistics.
  STEM_CONV: ClassVar[str] = "conv1"
  STEM_NORM: ClassVar[str] = "bn1"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    if self.last_stride not in (1, 2):
      raise ConfigError(f"model.last_stride must be 1 or 2, got {self.last_stride}")
    kind = ibn_kind(self.ibn)
    if self.non_local and not any(self.non_local_stages):
      raise ConfigError("model.non_local: this backbone has no (FastReID) non-local positions")
    groups = max(1, self.groups * self.width // 64)
    intermediates = {}
    if self.first is None:
      x = Conv(self.width, 7, stride=2, padding=3, impl=self.conv_impl,
               sa_kernel=self.sa_kernel if 0 in self.sa_stages else 0, name=self.STEM_CONV)(x)
      if kind == "b":
        x = instance_norm(name=self.STEM_NORM)(x)
      else:
        x = batch_norm(name=self.STEM_NORM)(x, use_running_average=not train)
      x = stem_max_pool(nn.relu(x), self.ceil_mode_pool)
      intermediates["stem"] = x
    first = self.first or (1, 0)
    last = self.last or (len(self.stage_sizes), self.stage_sizes[-1] - 1)
    strides = (1, 2, 2, self.last_stride)
    for i, (blocks, stride) in enumerate(zip(self.stage_sizes, strides)):
      planes = self.width * 2 ** i
      n_local = self.non_local_stages[i] if self.non_local else 0
      for j in range(blocks):
        if not first <= (i + 1, j) <= last:
          continue
        x = self.block(planes, stride=stride if j == 0 else 1,
                       ibn=kind == "a" and i < 3,
                       ibn_b=kind == "b" and i < 2 and j == blocks - 1,
                       groups=groups,
                       inner=planes * self.groups * self.width_per_group // 64,
                       conv_impl=self.conv_impl,
                       sa_kernel=self.sa_kernel if i + 1 in self.sa_stages else 0,
                       name=f"layer{i + 1}_{j}")(x, train=train)
        k = j - (blocks - n_local)
        if k >= 0:
          x = NonLocal(conv_impl=self.conv_impl, name=f"NL_{i + 1}_{k}")(x, train=train)
        if j == blocks - 1:
          intermediates[f"layer{i + 1}"] = x
    return x, intermediates
