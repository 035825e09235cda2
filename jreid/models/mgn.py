"""MGN, the Multiple Granularity Network (Wang et al. 2018), in FastReID's form.

A ResNet trunk is shared up to and including layer3_0; three branches then
each run their own copy of the remaining layer3 blocks and of layer4:

  b1: layer4 stride 2 (stride 32), one global feature;
  b2: layer4 stride `part_stride` (config `model.last_stride`; the paper's 1), global + 2 stripes;
  b3: the same, global + 3 stripes.

Stripes are horizontal, split as `jreid.models.pooling.stripe_bounds` (equal
stripes whenever the rows divide, as at 384 x 128). Each of the 8 regions is
pooled by its own instance of the configured pooling and goes through its own
BNNeck, as FastReID gives every region an EmbeddingHead without reduction.
The many classifiers learn local and global cues at once; the stripes force
the part branches to keep spatially distinct evidence.

Loss contract (FastReID's MGN): `branch_logits` are the 8 classifier outputs
(order b1, b2, b3, b21, b22, b31, b32, b33); `branch_features` are the 5
triplet inputs: the pre-neck globals of b1, b2, b3, then cat(b21, b22) and
cat(b31, b32, b33). The test feature is the concatenation of the 8 `neck`
(or `pre_neck`, per `test_feature`) features in the order above, 8 x 2048
for ResNet-50. `logits` is b1's; `stem`, `layer1`, `layer2` come from the
trunk, `layer3`, `layer4` from b1.

Parameter tree (FastReID MGN name in brackets; kernels HWIO / (C, K) vs torch
OIHW / (K, C), as `jreid.convert.torch_names`):

  backbone/conv1, backbone/bn1                       [backbone.0, backbone.1]
  backbone/layer1_{j}, backbone/layer2_{j}           [backbone.4.{j}, backbone.5.{j}]
  backbone/layer3_0                                  [backbone.6]
  b{n}/layer3_{j}/..., j >= 1                         [b{n}.0.{j-1}]
  b{n}/layer4_{j}/...                                 [b{n}.1.{j}]
  {r}_head/neck/{scale,bias}                          [{r}_head.bottleneck.0.*]
  {r}_head/classifier/kernel                          [{r}_head.weight or .classifier.weight]
  {r}_pool/p  (learnable GeM only)                    [{r}_head.pool_layer.p]

with n in 1..3 and r in b1, b2, b3, b21, b22, b31, b32, b33 (BN `batch_stats`
mirror the BN paths). Block names inside a branch are those of the full
ResNet, so a plain ResNet's `layer3_{j>=1}` and `layer4_*` weights copy to
each `b{n}/...` unchanged (b2/b3's stride-1 layer4_0 has the same shapes),
which `jreid.convert.load` does when it reads a plain ResNet file. Non-local blocks (`non_local`) stay at their
ResNet positions here (layer2's in the trunk, layer3's in every branch),
whereas FastReID's MGN drops them.
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jreid.models.heads import BNNeck
from jreid.models.pooling import horizontal_stripes

# (branch, number of stripes); b1's layer4 keeps stride 2, the others use part_stride.
BRANCHES = (("b1", 0), ("b2", 2), ("b3", 3))
# Region order of the 8 heads, FastReID's order for its test feature.
REGIONS = ("b1", "b2", "b3", "b21", "b22", "b31", "b32", "b33")


class MGN(nn.Module):
  """`resnet` builds a `ResNet` (a `BACKBONES` entry with width/ibn/non_local bound);
  `pooling` builds one pooling module per region.
  """
  resnet: Callable[..., nn.Module]
  pooling: Callable[..., nn.Module]
  num_classes: int
  neck_bias: bool = False
  cosine: bool = False
  part_stride: int = 1
  test_feature: str = "neck"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    shared, intermediates = self.resnet(last=(3, 0), name="backbone")(x, train=train)
    regions = {}
    for branch, parts in BRANCHES:
      stride = 2 if branch == "b1" else self.part_stride
      fmap, stages = self.resnet(first=(3, 1), last_stride=stride, name=branch)(shared, train=train)
      if branch == "b1":
        intermediates = {**intermediates, **stages}
      regions[branch] = fmap
      if parts:
        for k, stripe in enumerate(horizontal_stripes(fmap, parts)):
          regions[f"{branch}{k + 1}"] = stripe
    heads = {}
    for name in REGIONS:
      pooled = self.pooling(name=f"{name}_pool")(regions[name])
      heads[name] = BNNeck(self.num_classes, self.neck_bias, self.cosine,
                           name=f"{name}_head")(pooled, train=train)
    pre = {name: out["pre_neck"] for name, out in heads.items()}
    outputs = {
        "pre_neck": jnp.concatenate([pre[r] for r in REGIONS], axis=-1),
        "neck": jnp.concatenate([heads[r]["neck"] for r in REGIONS], axis=-1),
        "logits": heads["b1"]["logits"],
        "branch_logits": tuple(heads[r]["logits"] for r in REGIONS),
        "branch_features": (pre["b1"], pre["b2"], pre["b3"],
                            jnp.concatenate([pre["b21"], pre["b22"]], axis=-1),
                            jnp.concatenate([pre["b31"], pre["b32"], pre["b33"]], axis=-1)),
    }
    return outputs[self.test_feature], {**intermediates, **outputs}
