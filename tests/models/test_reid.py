"""Pooling, the BNNeck head and the assembled model from a config."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.models.heads import BNNeck
from jreid.models.pooling import POOLINGS, AvgPool, GeM
from jreid.models.reid import build_model, model_config

NUM_CLASSES = 7


def _tiny_config(backbone="resnet18", **overrides):
  """A ReID config; overrides that are backbone options go to `backbone`."""
  cfg = model_config("reid", backbone)
  cfg.backbone.width = 8
  cfg.backbone.update({k: overrides.pop(k) for k in list(overrides) if k in cfg.backbone})
  cfg.update(overrides)
  return cfg


def _numpy_gem(x, p, eps=1e-6):
  b, h, w, c = x.shape
  out = np.zeros((b, c))
  for i in range(b):
    for k in range(c):
      out[i, k] = np.mean(np.maximum(x[i, :, :, k], eps) ** p) ** (1 / p)
  return out


def test_gem_matches_numpy_and_p1_is_average():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 4, 2, 5)).astype(np.float32)  # negatives exercise the clamp
  y = GeM(p=3.0).apply({}, x)
  np.testing.assert_allclose(y, _numpy_gem(x.astype(np.float64), 3.0), rtol=1e-5)
  positive = np.abs(x) + 0.1
  np.testing.assert_allclose(GeM(p=1.0).apply({}, positive), AvgPool().apply({}, positive),
                             rtol=1e-5)
  assert set(POOLINGS) == {"avg", "max", "gem", "attention", "identity"}


def test_learnable_gem_p_is_a_param_with_finite_grad():
  pool = GeM(p=3.0, learnable_p=True)
  x = np.maximum(np.random.default_rng(1).normal(size=(2, 4, 2, 3)), 0).astype(np.float32)
  params = pool.init(jax.random.key(0), x)["params"]
  np.testing.assert_array_equal(params["p"], [3.0])
  grad = jax.grad(lambda p: jnp.sum(pool.apply({"params": p}, x)))(params)["p"]
  assert np.all(np.isfinite(grad)) and np.all(grad != 0)
  params = {"p": jnp.array([4.0])}
  np.testing.assert_allclose(pool.apply({"params": params}, x),
                             _numpy_gem(x.astype(np.float64), 4.0), rtol=1e-5)
  assert jax.eval_shape(lambda: GeM().init(jax.random.key(0), x)) == {}


@pytest.mark.parametrize("neck_bias", [False, True])
def test_bnneck_params_and_classifier_init(neck_bias):
  head = BNNeck(num_classes=500, neck_bias=neck_bias)
  feature = np.random.default_rng(0).normal(size=(6, 64)).astype(np.float32)
  variables = head.init(jax.random.key(0), feature, train=False)
  params = variables["params"]
  assert set(params["neck"]) == ({"scale", "bias"} if neck_bias else {"scale"})
  assert set(params["classifier"]) == {"kernel"}
  assert params["classifier"]["kernel"].shape == (64, 500)
  assert abs(np.std(params["classifier"]["kernel"]) / 0.001 - 1) < 0.05
  out, updates = head.apply(variables, feature, train=True, mutable=["batch_stats"])
  np.testing.assert_array_equal(out["pre_neck"], feature)
  ref = (feature - feature.mean(0)) / np.sqrt(feature.var(0) + 1e-5)
  np.testing.assert_allclose(out["neck"], ref, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out["logits"], ref @ np.asarray(params["classifier"]["kernel"]),
                             rtol=1e-4, atol=1e-6)
  assert set(updates["batch_stats"]["neck"]) == {"mean", "var"}


def test_default_config_is_bot():
  cfg = model_config()
  assert cfg.to_dict() == dict(
      meta="reid",
      backbone=dict(name="resnet50", width=64, last_stride=1, ibn="", non_local=False,
                    conv_impl="auto", sa_kernel=0, sa_stages=(0, 1, 2, 3, 4)),
      pooling="avg", gem_p=3.0, gem_learnable=False, test_feature="neck",
      head="bnneck", neck_bias=False, embed_dim=0, dropout=0.0)


def test_build_model_rejects_bad_configs():
  cfg = _tiny_config()
  cfg.unlock()
  cfg.embedding_size = 256
  with pytest.raises(ValueError, match="embedding_size"):
    build_model(cfg, NUM_CLASSES)
  with pytest.raises(ValueError, match="backbone"):
    build_model(_tiny_config(backbone="resnet5"), NUM_CLASSES)
  with pytest.raises(ValueError, match="test_feature"):
    build_model(_tiny_config(test_feature="logits"), NUM_CLASSES)


def test_param_tree_of_the_assembled_model():
  x = jnp.zeros((2, 32, 16, 3))
  model = build_model(_tiny_config(pooling="gem", gem_learnable=True, ibn="a"), NUM_CLASSES)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  params = variables["params"]
  assert set(params) == {"backbone", "pooling", "head"}
  assert params["pooling"]["p"].shape == (1,)
  assert set(params["head"]["neck"]) == {"scale"}  # BoT: no neck bias to freeze
  assert set(params["head"]["classifier"]) == {"kernel"}
  assert set(params["backbone"]["layer1_0"]["bn1"]) == {"IN", "BN"}
  plain = build_model(_tiny_config(), NUM_CLASSES)
  params = jax.eval_shape(lambda: plain.init(jax.random.key(0), x, train=False))["params"]
  assert set(params) == {"backbone", "head"}  # average pooling and fixed-p GeM have none


def test_features_logits_and_intermediates(random_variables):
  x = jax.random.normal(jax.random.key(1), (4, 32, 16, 3))
  neck_model = build_model(_tiny_config(), NUM_CLASSES)
  pre_model = build_model(_tiny_config(test_feature="pre_neck"), NUM_CLASSES)
  variables = random_variables(neck_model, x)
  # Non-trivial running statistics so neck and pre_neck differ at test time.
  variables["batch_stats"]["head"]["neck"]["mean"] += 0.5

  @jax.jit
  def run(v):
    neck_out = neck_model.apply(v, x, train=False)
    pre_out = pre_model.apply(v, x, train=False)
    train_out, updates = neck_model.apply(v, x, train=True, mutable=["batch_stats"])
    return neck_out, pre_out, train_out, updates

  (feature, inter), (pre_feature, _), (_, train_inter), updates = run(variables)
  assert set(inter) == {"stem", "layer1", "layer2", "layer3", "layer4",
                        "pre_neck", "neck", "logits", "branch_logits", "branch_features"}
  assert inter["logits"].shape == (4, NUM_CLASSES)
  # The loss contract: one classifier branch and one metric branch.
  np.testing.assert_array_equal(inter["branch_logits"][0], inter["logits"])
  np.testing.assert_array_equal(inter["branch_features"][0], inter["pre_neck"])
  assert inter["pre_neck"].shape == inter["neck"].shape == (4, 64)
  np.testing.assert_array_equal(feature, inter["neck"])
  np.testing.assert_array_equal(pre_feature, inter["pre_neck"])
  assert not np.allclose(feature, pre_feature)
  np.testing.assert_allclose(inter["pre_neck"], np.mean(inter["layer4"], axis=(1, 2)), rtol=1e-5)
  # Training normalises with batch statistics: the neck feature is centred.
  np.testing.assert_allclose(np.mean(train_inter["neck"], axis=0), 0, atol=1e-4)
  assert not np.allclose(updates["batch_stats"]["head"]["neck"]["mean"],
                         variables["batch_stats"]["head"]["neck"]["mean"])
