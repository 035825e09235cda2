"""Heads that turn a pooled feature into the neck feature and class logits."""
from __future__ import annotations

import flax.linen as nn
import jax

from jreid.models.layers import batch_norm


class BNNeck(nn.Module):
  """BNNeck (Luo et al., Bag of Tricks): BatchNorm1d between the metric and the ID space.

  The triplet loss sees the pooled feature (`pre_neck`), the classifier sees
  the batch-normalised one (`neck`), which separates the two objectives. BoT
  freezes the BN bias at zero; here that is simply a BN without a bias
  (`neck_bias=False`), so there is no parameter to freeze. The classifier is a
  bias-free linear layer initialised N(0, 0.001^2) as in BoT/FastReID, so the
  initial logits are near zero and the first CE gradients do not swamp the
  pretrained backbone.

  Params: `neck/scale` (+ `neck/bias` with `neck_bias`), `classifier/kernel`
  (C, num_classes); batch stats `neck/{mean,var}`.
  """
  num_classes: int
  neck_bias: bool = False

  @nn.compact
  def __call__(self, feature: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    neck = batch_norm(use_bias=self.neck_bias, name="neck")(
        feature, use_running_average=not train)
    logits = nn.Dense(self.num_classes, use_bias=False,
                      kernel_init=nn.initializers.normal(stddev=0.001),
                      name="classifier")(neck)
    return {"pre_neck": feature, "neck": neck, "logits": logits}
