"""PCB: stripe bins, per-stripe reduction and classifiers against numpy, size, gradients."""
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.errors import ConfigError
from jreid.models.backbones import BACKBONES
from jreid.models.layers import BN_EPSILON
from jreid.models.pcb import PCB
from jreid.models.pooling import stripe_bounds
from jreid.models.reid import build_model, model_config

NUM_CLASSES = 5
# A 128 x 32 input gives an 8-row map at last stride 1; 6 stripes of it, as
# torch's AdaptiveAvgPool2d((6, 1)) bins them (worked by hand).
ROWS_8_IN_6 = [(0, 2), (1, 3), (2, 4), (4, 6), (5, 7), (6, 8)]


def _config(backbone="resnet18", **overrides):
  """A PCB config; overrides that are backbone options go to `backbone`."""
  cfg = model_config("pcb", backbone)
  cfg.backbone.update(width=8)
  cfg.backbone.update({k: overrides.pop(k) for k in list(overrides) if k in cfg.backbone})
  cfg.update(overrides)
  return cfg


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def test_stripe_bounds_by_hand():
  assert stripe_bounds(8, 6) == ROWS_8_IN_6
  assert stripe_bounds(24, 6) == [(4 * i, 4 * i + 4) for i in range(6)]  # 384 x 128 inputs
  assert stripe_bounds(16, 3) == [(0, 6), (5, 11), (10, 16)]
  assert stripe_bounds(4, 2) == [(0, 2), (2, 4)]
  assert stripe_bounds(5, 1) == [(0, 5)]
  with pytest.raises(ConfigError, match="3 rows"):
    stripe_bounds(3, 6)


def test_full_size_count():
  """ResNet-50 + 6 x (2048 x 256 reduction, BN scale and bias, 256 x K classifier)."""
  x = jnp.zeros((1, 128, 64, 3))
  model = build_model(_config(backbone="resnet50", width=64), 751)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))["params"]
  plain = jax.eval_shape(lambda: BACKBONES["resnet50"]().init(jax.random.key(0), x, train=False))["params"]
  assert set(params) == {"backbone"} | {f"part{i}" for i in range(1, 7)}
  assert jax.tree.map(lambda a: a.shape, params["part1"]) == {
      "reduction": {"kernel": (2048, 256)}, "bn": {"scale": (256,), "bias": (256,)},
      "classifier": {"kernel": (256, 751)}}
  assert _count(params) == _count(plain) + 6 * (2048 * 256 + 2 * 256 + 256 * 751) == 27_810_368


@functools.lru_cache(maxsize=None)
def _tiny_step(fill):
  """One jitted call on a width-8 PCB-18, 128 x 32 inputs (8 x 2 map), shared by the tests below.

  Returns (grads of CE on every stripe + mean square of the metric feature,
  eval-mode (feature, intermediates), the `pre_neck` test feature,
  cosine-classifier logits, params).
  """
  model = build_model(_config(), NUM_CLASSES)
  pre_model = build_model(_config(test_feature="pre_neck"), NUM_CLASSES)
  cosine_model = build_model(_config(), NUM_CLASSES, cosine_classifier=True)
  x = np.random.default_rng(2).normal(size=(2, 128, 32, 3)).astype(np.float32)
  variables = fill(model, x)
  labels = jnp.array([0, 4])

  @jax.jit
  def step(variables):
    def loss_fn(p):
      (_, inter), _ = model.apply({"params": p, "batch_stats": variables["batch_stats"]}, x,
                                  train=True, mutable=["batch_stats"])
      ce = [jnp.mean(jax.nn.logsumexp(z, -1) - z[jnp.arange(2), labels]) for z in inter["branch_logits"]]
      return sum(ce) / len(ce) + jnp.mean(inter["branch_features"][0] ** 2)
    grads = jax.grad(loss_fn)(variables["params"])
    return (grads, model.apply(variables, x, train=False), pre_model.apply(variables, x, train=False)[0],
            cosine_model.apply(variables, x, train=False)[1]["branch_logits"])

  return (*jax.device_get(step(variables)), jax.device_get(variables["params"]))


def test_stripes_reduction_and_classifiers_match_numpy(random_variables):
  _, (feature, inter), pre_feature, _, params = _tiny_step(random_variables)
  fmap = np.asarray(inter["layer4"], np.float64)
  assert fmap.shape == (2, 8, 2, 64)  # last stride 1: stride 16
  g = [fmap[:, a:b].mean(axis=(1, 2)) for a, b in ROWS_8_IN_6]
  np.testing.assert_allclose(inter["pre_neck"], np.concatenate(g, -1), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(pre_feature, inter["pre_neck"], rtol=1e-6)
  # Eval-mode BN with the filled statistics (mean 0, var 1, scale 1, bias 0).
  h = [np.maximum(gi @ params[f"part{i + 1}"]["reduction"]["kernel"] / np.sqrt(1 + BN_EPSILON), 0)
       for i, gi in enumerate(g)]
  logits = [hi @ params[f"part{i + 1}"]["classifier"]["kernel"] for i, hi in enumerate(h)]
  np.testing.assert_allclose(feature, np.concatenate(h, -1), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(inter["neck"], feature, rtol=1e-6)
  assert feature.shape == (2, 6 * 256)
  assert len(inter["branch_features"]) == 1
  np.testing.assert_allclose(inter["branch_features"][0], feature, rtol=1e-6)
  assert len(inter["branch_logits"]) == 6
  # A logit is a 256-term dot product of float32 values: its rounding error scales with the
  # largest logit of the branch, not with the logit itself (one near zero cancels its terms).
  for got, want in zip(inter["branch_logits"], logits):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
  mean_logits = np.mean(logits, axis=0)
  np.testing.assert_allclose(inter["logits"], mean_logits, rtol=1e-4, atol=1e-5 * np.abs(mean_logits).max())
  for key in ("stem", "layer1", "layer2", "layer3", "layer4"):
    assert key in inter


def test_cosine_classifier_gives_cosines(random_variables):
  for logits in _tiny_step(random_variables)[3]:
    assert logits.shape == (2, NUM_CLASSES)
    assert np.all(np.abs(logits) <= 1 + 1e-5) and np.any(np.abs(logits) > 1e-3)


def test_train_step_gradients_are_finite_and_reach_every_parameter(random_variables):
  flat = flax.traverse_util.flatten_dict(_tiny_step(random_variables)[0])
  for path, grad in flat.items():
    assert np.all(np.isfinite(grad)), path
    assert np.any(grad != 0), path
  assert ("backbone", "conv1", "kernel") in flat and ("part6", "classifier", "kernel") in flat


def test_config_errors():
  assert isinstance(build_model(_config(), NUM_CLASSES), PCB)
  with pytest.raises(ConfigError, match="num_parts"):
    build_model(_config(num_parts=0), NUM_CLASSES)
  for key, value in (("head", "reduction"), ("neck_bias", True), ("embed_dim", 64)):
    with pytest.raises(ConfigError, match=key):
      build_model(_config(**{key: value}), NUM_CLASSES)
  model = build_model(_config(), NUM_CLASSES)
  x = jnp.zeros((1, 64, 32, 3))  # a 4-row map cannot hold 6 stripes
  with pytest.raises(ConfigError, match="6 stripes"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
