"""PCB, the Part-based Convolutional Baseline (Sun et al. 2018, "Beyond Part Models").

The backbone's final map (last stride 1 by default, as the paper: a taller map
gives each stripe more rows) is cut into `num_parts` horizontal stripes
(`jreid.models.pooling.stripe_bounds`, torch's AdaptiveAvgPool2d((p, 1))
bins), each pooled to a column vector g_i (the configured pooling; the
paper's is average). Each stripe then has its own 1x1 reduction to
`part_dim` + BN + ReLU (h_i) and its own bias-free classifier: one softmax
per part makes every stripe discriminative on its own, instead of letting a
global feature rely on a few salient regions.

Contract: `branch_logits` are the `num_parts` stripe logits; `branch_features`
is (cat(h_1..h_p),), one metric-loss input whose weight the config sets (the
paper has none). `neck` is cat(h_i), the paper's test feature
(p x part_dim = 1536); `pre_neck` is cat(g_i) (p x C), the paper's larger
alternative descriptor; `test_feature` picks between them. `logits` is the
mean of the stripe logits (a monitor; each stripe's loss uses its own).

Params: `backbone/...` (as `jreid.models.reid`), `pooling/p` (learnable GeM
only, shared by the stripes), and per stripe i in 1..p `part{i}/reduction/kernel`
(C, part_dim), `part{i}/bn/{scale,bias}`, `part{i}/classifier/kernel`.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jreid.models.heads import Classifier
from jreid.models.layers import batch_norm, kaiming_fan_out
from jreid.models.pooling import horizontal_stripes


class PartHead(nn.Module):
  """One stripe's reduction (1x1 conv on the pooled vector, i.e. a bias-free Dense; BN follows) and classifier."""
  num_classes: int
  part_dim: int
  dropout: float = 0.0
  cosine: bool = False

  @nn.compact
  def __call__(self, g: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
    h = nn.Dense(self.part_dim, use_bias=False, kernel_init=kaiming_fan_out(), name="reduction")(g)
    h = nn.relu(batch_norm(name="bn")(h, use_running_average=not train))
    logits = Classifier(self.num_classes, self.cosine, name="classifier")(
        nn.Dropout(self.dropout, deterministic=not train)(h))
    return h, logits


class PCB(nn.Module):
  """Backbone (`backbone`), stripe pooling (`pooling`), `num_parts` `PartHead`s (`part1`..)."""
  backbone: nn.Module
  pooling: nn.Module
  num_classes: int
  num_parts: int = 6
  part_dim: int = 256
  dropout: float = 0.0
  cosine: bool = False
  test_feature: str = "neck"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    fmap, intermediates = self.backbone(x, train=train)
    pooled = [self.pooling(stripe) for stripe in horizontal_stripes(fmap, self.num_parts)]
    parts = [PartHead(self.num_classes, self.part_dim, self.dropout, self.cosine,
                      name=f"part{i + 1}")(g, train=train) for i, g in enumerate(pooled)]
    reduced = jnp.concatenate([h for h, _ in parts], axis=-1)
    branch_logits = tuple(logits for _, logits in parts)
    outputs = {
        "pre_neck": jnp.concatenate(pooled, axis=-1),
        "neck": reduced,
        "logits": sum(branch_logits) / len(branch_logits),
        "branch_logits": branch_logits,
        "branch_features": (reduced,),
    }
    return outputs[self.test_feature], {**intermediates, **outputs}
