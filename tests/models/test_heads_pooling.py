"""The extra aggregation layers and heads against numpy references."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.errors import ConfigError
from jreid.models.heads import LinearHead, ReductionHead
from jreid.models.pooling import AttentionPool, IdentityPool, MaxPool


def _x(shape=(3, 4, 2, 5), seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def test_max_pool():
  x = _x()
  assert np.allclose(MaxPool().apply({}, x), np.asarray(x).max(axis=(1, 2)))


def test_attention_pool_starts_as_average_and_follows_its_scores():
  x = _x()
  pool = AttentionPool()
  variables = pool.init(jax.random.key(0), x)
  assert np.allclose(pool.apply(variables, x), np.asarray(x).mean(axis=(1, 2)), atol=1e-6)
  kernel = np.random.default_rng(1).normal(size=(5, 1)).astype(np.float32)
  variables = {"params": {"score": {"kernel": kernel, "bias": np.zeros(1, np.float32)}}}
  flat = np.asarray(x).reshape(3, 8, 5)
  scores = flat @ kernel[:, 0]
  weights = np.exp(scores - scores.max(1, keepdims=True))
  weights /= weights.sum(1, keepdims=True)
  expected = np.einsum("bl,blc->bc", weights, flat)
  assert np.allclose(pool.apply(variables, x), expected, atol=1e-5)


def test_identity_pool_passes_vectors_and_rejects_maps():
  vectors = _x((3, 7))
  assert np.array_equal(IdentityPool().apply({}, vectors), vectors)
  with pytest.raises(ConfigError, match="identity"):
    IdentityPool().apply({}, _x())


def test_linear_head_is_a_classifier_on_the_pooled_feature():
  x = _x((4, 6))
  head = LinearHead(num_classes=3)
  variables = head.init(jax.random.key(0), x, train=False)
  out = head.apply(variables, x, train=False)
  assert np.array_equal(out["neck"], x) and np.array_equal(out["pre_neck"], x)
  kernel = np.asarray(variables["params"]["classifier"]["kernel"])
  assert np.allclose(out["logits"], np.asarray(x) @ kernel, atol=1e-6)
  assert "bias" not in variables["params"]["classifier"]


def test_reduction_head_matches_numpy_in_training_mode():
  x = _x((6, 8))
  head = ReductionHead(num_classes=3, embed_dim=4, dropout=0.0)
  variables = head.init(jax.random.key(0), x, train=False)
  out, _ = head.apply(variables, x, train=True, mutable=["batch_stats"],
                      rngs={"dropout": jax.random.key(1)})
  params = jax.tree.map(np.asarray, variables["params"])

  def bn(z, scale, bias=0.0):
    return (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5) * scale + bias

  reduced = np.asarray(x) @ params["reduction"]["kernel"]
  reduced = bn(reduced, params["reduction_bn"]["scale"], params["reduction_bn"]["bias"])
  reduced = np.where(reduced > 0, reduced, 0.1 * reduced)
  neck = bn(reduced, params["bnneck"]["neck"]["scale"])
  assert np.allclose(out["pre_neck"], reduced, atol=1e-5)
  assert np.allclose(out["neck"], neck, atol=1e-5)
  assert np.allclose(out["logits"], neck @ params["bnneck"]["classifier"]["kernel"], atol=1e-5)


def test_reduction_dropout_only_in_training():
  x = _x((5, 8))
  head = ReductionHead(num_classes=3, embed_dim=16, dropout=0.5)
  variables = head.init(jax.random.key(0), x, train=False)
  first = head.apply(variables, x, train=False)["pre_neck"]
  assert np.array_equal(first, head.apply(variables, x, train=False)["pre_neck"])
  trained, _ = head.apply(variables, x, train=True, mutable=["batch_stats"],
                          rngs={"dropout": jax.random.key(2)})
  zeros = float(np.mean(np.asarray(trained["pre_neck"]) == 0))
  assert 0.3 < zeros < 0.7


def test_assembled_model_with_reduction_head_and_attention_pooling(random_variables):
  from jreid.models.reid import build_model, model_config
  cfg = model_config("reid", "resnet18")
  cfg.backbone.update(width=8)
  cfg.update(pooling="attention", head="reduction", embed_dim=16,
             dropout=0.1, test_feature="pre_neck")
  model = build_model(cfg, 5)
  x = _x((4, 32, 16, 3))
  variables = random_variables(model, x)
  (feature, out), _ = model.apply(variables, x, train=True, mutable=["batch_stats"],
                                  rngs={"dropout": jax.random.key(0)})
  assert feature.shape == (4, 16) and out["logits"].shape == (4, 5)
  cfg.embed_dim = 0
  with pytest.raises(ConfigError, match="embed_dim"):
    build_model(cfg, 5)
