"""The config-driven objective against the individual losses called by hand."""
import jax.numpy as jnp
import numpy as np
import pytest

from jreid import config_blocks
from jreid.errors import ConfigError
from jreid.losses import objective
from jreid.losses.circle import pairwise_circle
from jreid.losses.focal import focal_loss
from jreid.losses.margin import circle_logits, cosine_logits
from jreid.losses.softmax import cross_entropy
from jreid.losses.triplet import batch_hard_triplet


def _batch(seed, b=8, d=6, k=4):
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(b // 2), 2) % k
  return rng.normal(size=(b, k)).astype(np.float32), rng.normal(size=(b, d)).astype(np.float32), labels


def test_bag_of_tricks_is_ce_plus_triplet():
  logits, features, labels = _batch(0)
  total, parts = objective.reid_losses(
      {"branch_logits": (logits,), "branch_features": (features,)}, labels, config_blocks.loss())
  ce = cross_entropy(logits, labels, 0.1)
  triplet = batch_hard_triplet(features, labels, margin=0.3)
  assert set(parts) == {"loss_ce", "loss_triplet"}
  np.testing.assert_allclose(parts["loss_ce"], ce, rtol=1e-6)
  np.testing.assert_allclose(parts["loss_triplet"], triplet, rtol=1e-6)
  np.testing.assert_allclose(total, ce + triplet, rtol=1e-6)


def test_parts_average_over_branches_and_weights_apply():
  config = config_blocks.loss(ce_weight=0.5, triplet_weight=2.0, triplet_soft_margin=True,
                              triplet_normalize=True, focal_weight=0.3, circle_weight=0.7)
  (l1, f1, labels), (l2, f2, _) = _batch(1), _batch(2)
  outputs = {"branch_logits": (l1, l2), "branch_features": (f1, f2, f1 + f2)}
  total, parts = objective.reid_losses(outputs, labels, config)
  ce = (cross_entropy(l1, labels, 0.1) + cross_entropy(l2, labels, 0.1)) / 2
  focal = (focal_loss(l1, labels) + focal_loss(l2, labels)) / 2
  trip = sum(batch_hard_triplet(f, labels, soft_margin=True, normalize=True)
             for f in (f1, f2, f1 + f2)) / 3
  circle = sum(pairwise_circle(f, labels, 0.25, 128.0) for f in (f1, f2, f1 + f2)) / 3
  for name, value in [("loss_ce", ce), ("loss_focal", focal), ("loss_triplet", trip),
                      ("loss_circle", circle)]:
    np.testing.assert_allclose(parts[name], value, rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(total, 0.5 * ce + 0.3 * focal + 2.0 * trip + 0.7 * circle, rtol=1e-5)


def test_zero_weight_parts_are_not_computed():
  logits, features, labels = _batch(3)
  _, parts = objective.reid_losses({"branch_logits": (logits,), "branch_features": (features,)},
                                   labels, config_blocks.loss(triplet_weight=0.0))
  assert set(parts) == {"loss_ce"}


def test_margin_softmax_applies_to_the_cosine_classifier_output():
  rng = np.random.default_rng(4)
  features, kernel = rng.normal(size=(6, 5)), rng.normal(size=(5, 3))
  labels = np.array([0, 1, 2, 0, 1, 2])
  cos = cosine_logits(jnp.asarray(features, jnp.float32), jnp.asarray(kernel, jnp.float32))
  config = config_blocks.loss(softmax="circle", softmax_scale=32.0, softmax_margin=0.25,
                              triplet_weight=0.0)
  assert objective.cosine_classifier(config)
  assert not objective.cosine_classifier(config_blocks.loss())
  _, parts = objective.reid_losses({"branch_logits": (cos,), "branch_features": (features,)},
                                   labels, config)
  expected = cross_entropy(circle_logits(cos, labels, scale=32.0, margin=0.25), labels, 0.1)
  np.testing.assert_allclose(parts["loss_ce"], expected, rtol=1e-6)


def test_unknown_softmax_is_a_config_error():
  with pytest.raises(ConfigError, match="softmax='sphereface'"):
    objective.cosine_classifier(config_blocks.loss(softmax="sphereface"))
