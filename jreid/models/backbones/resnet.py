"""ResNet-18/34/50/101 (torchvision v1.5 layout) with FastReID's ReID options.

Options: `last_stride` (1 keeps layer4 at stride 16, the BoT trick for finer
maps), `ibn` (IBN-a as in FastReID's resnet_ibn_a: in layer1..layer3 the bn1 of
*every* block is an `IBN`, layer4 and the stem keep plain BN), `width` (base
channels; 64 is the published network, 8 or 16 give tiny CPU/test variants with
every stage scaled alike).

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

with i in 1..4 and j from 0; BasicBlock has conv1, bn1, conv2, bn2 and the same
downsample names. `batch_stats` mirrors every BN path with `mean`/`var`
[running_mean/running_var]. Kernels are HWIO (torch OIHW).
"""
from __future__ import annotations

import math
from typing import ClassVar, Sequence

import flax.linen as nn
import jax

from jreid.errors import ConfigError
from jreid.models.layers import IBN, Conv, batch_norm


def _norm1(ibn: bool) -> nn.Module:
  """The first norm of a block: IBN-a where asked, BN otherwise; same name either way."""
  return IBN(name="bn1") if ibn else batch_norm(name="bn1")


def _shortcut(x: jax.Array, features: int, stride: int, train: bool) -> jax.Array:
  """Identity, or a strided 1x1 conv + BN where the shape changes (torchvision's rule).

  Called inside a block's compact `__call__`, so the modules belong to the block.
  """
  if stride == 1 and x.shape[-1] == features:
    return x
  x = Conv(features, 1, stride=stride, name="downsample_conv")(x)
  return batch_norm(name="downsample_bn")(x, use_running_average=not train)


class BasicBlock(nn.Module):
  """3x3 -> 3x3 residual block (ResNet-18/34); the stride sits on conv1."""
  planes: int
  stride: int = 1
  ibn: bool = False
  expansion: ClassVar[int] = 1

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    use_avg = not train
    y = Conv(self.planes, 3, stride=self.stride, padding=1, name="conv1")(x)
    y = nn.relu(_norm1(self.ibn)(y, use_running_average=use_avg))
    y = Conv(self.planes, 3, padding=1, name="conv2")(y)
    y = batch_norm(name="bn2")(y, use_running_average=use_avg)
    return nn.relu(y + _shortcut(x, self.planes, self.stride, train))


class Bottleneck(nn.Module):
  """1x1 -> 3x3 -> 1x1 (x4) block (ResNet-50/101); v1.5: the stride sits on the 3x3 conv."""
  planes: int
  stride: int = 1
  ibn: bool = False
  expansion: ClassVar[int] = 4

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    use_avg = not train
    out_features = self.planes * self.expansion
    y = Conv(self.planes, 1, name="conv1")(x)
    y = nn.relu(_norm1(self.ibn)(y, use_running_average=use_avg))
    y = Conv(self.planes, 3, stride=self.stride, padding=1, name="conv2")(y)
    y = nn.relu(batch_norm(name="bn2")(y, use_running_average=use_avg))
    y = Conv(out_features, 1, name="conv3")(y)
    y = batch_norm(name="bn3")(y, use_running_average=use_avg)
    return nn.relu(y + _shortcut(x, out_features, self.stride, train))


def stem_max_pool(x: jax.Array, ceil_mode: bool) -> jax.Array:
  """3x3 stride-2 max pooling of the stem, in FastReID's or torchvision's form.

  FastReID uses `MaxPool2d(3, stride=2, ceil_mode=True)` without padding;
  torchvision uses `MaxPool2d(3, stride=2, padding=1)`. For even sizes both
  halve the map but the windows are offset by one pixel, so outputs differ;
  `ceil_mode=True` reproduces FastReID, False reproduces torchvision. Ceil
  mode is expressed as -inf padding at the far end only, just enough for the
  last window torch keeps (a window must start inside the input).
  """
  if not ceil_mode:
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
  pads = []
  for n in x.shape[1:3]:
    out = math.ceil(max(n - 3, 0) / 2) + 1
    if (out - 1) * 2 >= n:
      out -= 1
    pads.append((0, max((out - 1) * 2 + 3 - n, 0)))
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding=pads)


class ResNet(nn.Module):
  """A ResNet trunk without the classifier: `(x, *, train) -> (layer4 map, intermediates)`.

  Input NHWC float images. `intermediates` holds `stem` (after the max pool,
  stride 4, as detectron2's stem) and `layer1`..`layer4` (strides 4, 8, 16,
  and 16 or 32 by `last_stride`).
  """
  block: type[BasicBlock] | type[Bottleneck]
  stage_sizes: Sequence[int]
  width: int = 64
  last_stride: int = 1
  ibn: bool = False
  ceil_mode_pool: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    if self.last_stride not in (1, 2):
      raise ConfigError(f"model.last_stride must be 1 or 2, got {self.last_stride}")
    x = Conv(self.width, 7, stride=2, padding=3, name="conv1")(x)
    x = nn.relu(batch_norm(name="bn1")(x, use_running_average=not train))
    x = stem_max_pool(x, self.ceil_mode_pool)
    intermediates = {"stem": x}
    strides = (1, 2, 2, self.last_stride)
    for i, (blocks, stride) in enumerate(zip(self.stage_sizes, strides)):
      planes = self.width * 2 ** i
      for j in range(blocks):
        x = self.block(planes, stride=stride if j == 0 else 1, ibn=self.ibn and i < 3,
                       name=f"layer{i + 1}_{j}")(x, train=train)
      intermediates[f"layer{i + 1}"] = x
    return x, intermediates
