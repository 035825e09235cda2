"""ResNeSt (Zhang et al., "ResNeSt: Split-Attention Networks", 2020), the ResNeSt-50 configuration.

ResNeSt-50 is a ResNet-50 with three changes, each here because the paper's
ablation keeps it:
  * a deep stem: three 3x3 convs (3 -> 32 stride 2, 32 -> 32, 32 -> 64) in place
    of the 7x7, then torchvision's padded 3x3 max pool;
  * split attention in place of each bottleneck's 3x3 conv (`SplitAttention`):
    radix 2, cardinality 1, bottleneck width 64 (so the block's inner width is
    `planes`, as in ResNet-50);
  * "avg-down" and "avd": a shortcut that changes resolution average-pools
    (kernel = stride, ceil mode, padding not counted) and then applies a
    stride-1 1x1 conv, instead of a strided 1x1 conv that drops 3/4 of the
    pixels; and in the first block of layer2..layer4 the split-attention conv
    runs at stride 1 and a 3x3 average pool (padding 1, zeros counted) applies
    the stride after it. As in the official code the pool is there for those
    first blocks even at stride 1 (layer4 with `last_stride` 1).

Parameter tree (flax name; torch name of the official ResNeSt in brackets):

  conv1_0/kernel, conv1_1/{scale,bias}      [conv1.0.weight, conv1.1.*]  (3x3, BN)
  conv1_3/kernel, conv1_4/{scale,bias}      [conv1.3.weight, conv1.4.*]
  conv1_6/kernel, bn1/{scale,bias}          [conv1.6.weight, bn1.*]
  layer{i}_{j}/conv1/kernel, bn1            [layer{i}.{j}.conv1.weight, bn1.*]
  layer{i}_{j}/conv2/conv/kernel            [layer{i}.{j}.conv2.conv.weight]
  layer{i}_{j}/conv2/bn0/{scale,bias}       [layer{i}.{j}.conv2.bn0.*]
  layer{i}_{j}/conv2/fc1/{kernel,bias}      [layer{i}.{j}.conv2.fc1.*]
  layer{i}_{j}/conv2/bn1/{scale,bias}       [layer{i}.{j}.conv2.bn1.*]
  layer{i}_{j}/conv2/fc2/{kernel,bias}      [layer{i}.{j}.conv2.fc2.*]
  layer{i}_{j}/conv3/kernel, bn3            [layer{i}.{j}.conv3.weight, bn3.*]
  layer{i}_{j}/downsample_conv/kernel       [layer{i}.{j}.downsample.1.weight]
  layer{i}_{j}/downsample_bn/{scale,bias}   [layer{i}.{j}.downsample.2.*]
  NL_{i}_{k}/...                            [NL_{i}.{k}.*]  (non_local, as in resnet.py)

(the avg-down pool is `downsample.0`, without parameters). `width` scales the
stem (stem width = width / 2) and every stage alike, for tiny test variants.
"""
from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jreid.errors import ConfigError
from jreid.models.backbones.non_local import NonLocal
from jreid.models.backbones.resnet import stem_max_pool
from jreid.models.layers import Conv, batch_norm


class SplitAttention(nn.Module):
  """Split-attention 3x3 conv: `radix` conv branches, mixed per channel by a softmax over branches.

  One grouped conv (groups = cardinality * radix) makes `radix` maps of
  `features` channels; their sum is pooled globally, squeezed through fc1
  (to max(in * radix / 4, 32) channels) and expanded by fc2 to one logit per
  branch and channel; a softmax over the branches (a sigmoid when radix is 1)
  weights the maps, which are summed. The softmax runs within each cardinal
  group, over the radix axis, as the official `rSoftMax`.
  """
  features: int
  stride: int = 1
  radix: int = 2
  cardinality: int = 1
  reduction: int = 4
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    use_avg = not train
    b, c = x.shape[0], self.features
    inter = max(x.shape[-1] * self.radix // self.reduction, 32)
    conv = functools.partial(Conv, impl=self.conv_impl)
    y = conv(c * self.radix, 3, stride=self.stride, padding=1,
             groups=self.cardinality * self.radix, name="conv")(x)
    y = nn.relu(batch_norm(name="bn0")(y, use_running_average=use_avg))
    splits = y.reshape(*y.shape[:3], self.radix, c)  # channel r*c + k -> (r, k)
    gap = jnp.mean(jnp.sum(splits, axis=3), axis=(1, 2), keepdims=True)
    gap = conv(inter, 1, groups=self.cardinality, use_bias=True, name="fc1")(gap)
    gap = nn.relu(batch_norm(name="bn1")(gap, use_running_average=use_avg))
    logits = conv(c * self.radix, 1, groups=self.cardinality, use_bias=True, name="fc2")(gap)
    # fc2's channels are (cardinal group, radix, k); softmax over radix within a group.
    logits = logits.reshape(b, self.cardinality, self.radix, c // self.cardinality)
    if self.radix > 1:
      weights = jax.nn.softmax(logits, axis=2)
    else:
      weights = jax.nn.sigmoid(logits)
    weights = jnp.moveaxis(weights, 2, 1).reshape(b, 1, 1, self.radix, c)
    return jnp.sum(weights * splits, axis=3)


def _avg_down(x: jax.Array, stride: int) -> jax.Array:
  """torch `AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)`."""
  if stride == 1:
    return x
  pads = [(0, -n % stride) for n in x.shape[1:3]]
  return nn.avg_pool(x, (stride, stride), strides=(stride, stride), padding=pads,
                     count_include_pad=False)


class ResNeStBottleneck(nn.Module):
  """1x1 -> split-attention 3x3 -> (avd pool) -> 1x1 (x4), with the avg-down shortcut."""
  planes: int
  stride: int = 1
  avd: bool = False
  radix: int = 2
  conv_impl: str = "xla"
  expansion = 4

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    use_avg = not train
    out_features = self.planes * self.expansion
    conv = functools.partial(Conv, impl=self.conv_impl)
    y = conv(self.planes, 1, name="conv1")(x)
    y = nn.relu(batch_norm(name="bn1")(y, use_running_average=use_avg))
    y = SplitAttention(self.planes, stride=1 if self.avd else self.stride, radix=self.radix,
                       conv_impl=self.conv_impl, name="conv2")(y, train=train)
    if self.avd:
      y = nn.avg_pool(y, (3, 3), strides=(self.stride, self.stride), padding=((1, 1), (1, 1)))
    y = conv(out_features, 1, name="conv3")(y)
    y = batch_norm(name="bn3")(y, use_running_average=use_avg)
    shortcut = x
    if self.stride != 1 or x.shape[-1] != out_features:
      shortcut = conv(out_features, 1, name="downsample_conv")(_avg_down(x, self.stride))
      shortcut = batch_norm(name="downsample_bn")(shortcut, use_running_average=use_avg)
    return nn.relu(y + shortcut)


class ResNeSt(nn.Module):
  """ResNeSt trunk: `(x, *, train) -> (layer4 map, intermediates)`, the same contract as `ResNet`.

  `ibn` is accepted for the common `BACKBONES` call and must be false (no
  IBN form of ResNeSt is implemented). `non_local` inserts FastReID's
  non-local blocks at `non_local_stages`, as for ResNet.
  """
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  width: int = 64
  last_stride: int = 1
  ibn: bool | str | None = False
  ceil_mode_pool: bool = False
  non_local: bool = False
  non_local_stages: Sequence[int] = (0, 2, 3, 0)
  radix: int = 2
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    if self.last_stride not in (1, 2):
      raise ConfigError(f"model.last_stride must be 1 or 2, got {self.last_stride}")
    if self.ibn:
      raise ConfigError("model.ibn is not implemented for ResNeSt")
    use_avg = not train
    stem = self.width // 2
    conv = functools.partial(Conv, impl=self.conv_impl)
    for k, (features, stride) in enumerate(((stem, 2), (stem, 1))):
      x = conv(features, 3, stride=stride, padding=1, name=f"conv1_{3 * k}")(x)
      x = nn.relu(batch_norm(name=f"conv1_{3 * k + 1}")(x, use_running_average=use_avg))
    x = conv(self.width, 3, padding=1, name="conv1_6")(x)
    x = nn.relu(batch_norm(name="bn1")(x, use_running_average=use_avg))
    x = stem_max_pool(x, self.ceil_mode_pool)
    intermediates = {"stem": x}
    strides = (1, 2, 2, self.last_stride)
    for i, (blocks, stride) in enumerate(zip(self.stage_sizes, strides)):
      n_local = self.non_local_stages[i] if self.non_local else 0
      for j in range(blocks):
        first = j == 0
        x = ResNeStBottleneck(self.width * 2 ** i, stride=stride if first else 1,
                              avd=first and i > 0, radix=self.radix, conv_impl=self.conv_impl,
                              name=f"layer{i + 1}_{j}")(x, train=train)
        k = j - (blocks - n_local)
        if k >= 0:
          x = NonLocal(conv_impl=self.conv_impl, name=f"NL_{i + 1}_{k}")(x, train=train)
      intermediates[f"layer{i + 1}"] = x
    return x, intermediates
