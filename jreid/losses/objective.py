"""The supervised ReID objective named by `config.loss`, over a model's loss contract.

A model returns `branch_logits` (one per classifier) and `branch_features`
(one per metric-learning feature); see `jreid.models.reid`. Each weighted
part is averaged over its branches, as FastReID's MGN scales its eight CE
and five triplet terms by 1/8 and 1/5, so a one-branch model gets exactly the
BoT loss and weights mean the same for every meta-architecture.

Parts, each on only when its weight is non-zero:
  - `loss_ce`: label-smoothed CE on the branch logits, turned into ArcFace /
    CosFace / CircleSoftmax logits first when `softmax` names one (the model
    then has a cosine classifier, see `cosine_classifier`);
  - `loss_focal`: focal loss on the same logits;
  - `loss_triplet`: batch-hard triplet (margin or soft margin, optional L2
    normalisation) on the branch features;
  - `loss_circle`: pairwise circle loss on the branch features.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jreid.errors import ConfigError
from jreid.losses.circle import pairwise_circle
from jreid.losses.focal import focal_loss
from jreid.losses.margin import arcface_logits, circle_logits, cosface_logits
from jreid.losses.softmax import cross_entropy
from jreid.losses.triplet import batch_hard_triplet

MARGIN_SOFTMAXES = {"arcface": arcface_logits, "cosface": cosface_logits, "circle": circle_logits}
SOFTMAXES = ("linear", *MARGIN_SOFTMAXES)


def check(loss_config) -> None:
  if loss_config.softmax not in SOFTMAXES:
    raise ConfigError(f"loss.softmax={loss_config.softmax!r}; choose one of {SOFTMAXES}")


def cosine_classifier(loss_config) -> bool:
  """Whether the model's classifiers must return cosines (a margin softmax is configured)."""
  check(loss_config)
  return loss_config.softmax in MARGIN_SOFTMAXES


def softmax_logits(branch_output: jax.Array, labels: jax.Array, loss_config) -> jax.Array:
  """A classifier's output as the logits the softmax losses see (float32)."""
  branch_output = branch_output.astype(jnp.float32)
  if loss_config.softmax == "linear":
    return branch_output
  return MARGIN_SOFTMAXES[loss_config.softmax](branch_output, labels, scale=loss_config.softmax_scale,
                                               margin=loss_config.softmax_margin)


def _mean(values):
  return sum(values) / len(values)


def reid_losses(outputs: dict, labels: jax.Array, loss_config) -> tuple[jax.Array, dict]:
  """(weighted total, {part name: unweighted value}) for one batch."""
  config = loss_config
  logits = [softmax_logits(x, labels, config) for x in outputs["branch_logits"]]
  features = [x.astype(jnp.float32) for x in outputs["branch_features"]]
  terms = {
      "loss_ce": (config.ce_weight,
                  lambda: _mean([cross_entropy(x, labels, config.label_smoothing) for x in logits])),
      "loss_focal": (config.focal_weight,
                     lambda: _mean([focal_loss(x, labels, config.focal_alpha, config.focal_gamma)
                                    for x in logits])),
      "loss_triplet": (config.triplet_weight,
                       lambda: _mean([batch_hard_triplet(x, labels, margin=config.triplet_margin,
                                                         soft_margin=config.triplet_soft_margin,
                                                         normalize=config.triplet_normalize)
                                      for x in features])),
      "loss_circle": (config.circle_weight,
                      lambda: _mean([pairwise_circle(x, labels, config.circle_margin, config.circle_gamma)
                                     for x in features])),
  }
  parts = {name: compute() for name, (weight, compute) in terms.items() if weight}
  total = sum(terms[name][0] * value for name, value in parts.items())
  return jnp.asarray(total, jnp.float32), parts
