"""Heads that turn a pooled feature into the neck feature and class logits."""
from __future__ import annotations

import flax.linen as nn
import jax

from jreid.losses.margin import cosine_logits
from jreid.models.layers import batch_norm


class Classifier(nn.Module):
  """Bias-free class centres (`kernel`, (C, num_classes)), initialised N(0, 0.001^2) as BoT/FastReID.

  `cosine=False` returns linear logits; `cosine=True` returns the cosines
  between feature and centre, which the margin softmaxes (ArcFace, CosFace,
  CircleSoftmax in `jreid.losses.margin`) turn into logits with the label.
  Both forms have the same parameter, so a checkpoint moves between them.
  """
  num_classes: int
  cosine: bool = False

  @nn.compact
  def __call__(self, feature: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.normal(stddev=0.001),
                        (feature.shape[-1], self.num_classes))
    if self.cosine:
      return cosine_logits(feature, kernel)
    return feature @ kernel.astype(feature.dtype)


class BNNeck(nn.Module):
  """BNNeck (Luo et al., Bag of Tricks): BatchNorm1d between the metric and the ID space.

  The triplet loss sees the pooled feature (`pre_neck`), the classifier sees
  the batch-normalised one (`neck`), which separates the two objectives. BoT
  freezes the BN bias at zero; here that is simply a BN without a bias
  (`neck_bias=False`), so there is no parameter to freeze. The classifier is a
  bias-free `Classifier` initialised N(0, 0.001^2) as in BoT/FastReID, so the
  initial logits are near zero and the first CE gradients do not swamp the
  pretrained backbone; `cosine=True` makes its logits cosines for a margin
  softmax.

  Params: `neck/scale` (+ `neck/bias` with `neck_bias`), `classifier/kernel`
  (C, num_classes) unless `num_classes` is 0 (no classifier, no `logits`);
  batch stats `neck/{mean,var}`.
  """
  num_classes: int
  neck_bias: bool = False
  cosine: bool = False

  @nn.compact
  def __call__(self, feature: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    neck = batch_norm(use_bias=self.neck_bias, name="neck")(
        feature, use_running_average=not train)
    out = {"pre_neck": feature, "neck": neck}
    if self.num_classes:  # 0: an embedding model (cluster contrast), no ID classifier
      out["logits"] = Classifier(self.num_classes, self.cosine, name="classifier")(neck)
    return out


class LinearHead(nn.Module):
  """A bias-free classifier straight on the pooled feature (no neck): `neck` is `pre_neck`."""
  num_classes: int
  cosine: bool = False

  @nn.compact
  def __call__(self, feature: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    out = {"pre_neck": feature, "neck": feature}
    if self.num_classes:
      out["logits"] = Classifier(self.num_classes, self.cosine, name="classifier")(feature)
    return out


class ReductionHead(nn.Module):
  """FastReID's reduction head: linear -> BN -> LeakyReLU(0.1) -> dropout to `embed_dim`, then BNNeck.

  A lower-dimensional embedding is cheaper to store and search; the metric
  loss sees the reduced feature (`pre_neck`), the classifier its BN (`neck`).
  Params: `reduction/kernel`, `reduction_bn/{scale,bias}`, then BNNeck's.
  """
  num_classes: int
  embed_dim: int
  dropout: float = 0.0
  neck_bias: bool = False
  cosine: bool = False

  @nn.compact
  def __call__(self, feature: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    reduced = nn.Dense(self.embed_dim, use_bias=False, name="reduction")(feature)
    reduced = batch_norm(name="reduction_bn")(reduced, use_running_average=not train)
    reduced = nn.leaky_relu(reduced, negative_slope=0.1)
    reduced = nn.Dropout(self.dropout, deterministic=not train)(reduced)
    return BNNeck(self.num_classes, self.neck_bias, self.cosine, name="bnneck")(reduced, train=train)
