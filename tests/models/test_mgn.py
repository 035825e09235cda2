"""MGN: tree and size against the plain ResNet, strides, stripes, the loss contract, gradients."""
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.errors import ConfigError
from jreid.models.backbones import BACKBONES
from jreid.models.mgn import MGN
from jreid.models.reid import ReID, build_model, model_config

NUM_CLASSES = 5
REGIONS = ("b1", "b2", "b3", "b21", "b22", "b31", "b32", "b33")


def _config(backbone="resnet50", **overrides):
  """An MGN config; overrides that are backbone options go to `backbone`."""
  cfg = model_config("mgn", backbone)
  cfg.backbone.update(width=8)
  cfg.backbone.update({k: overrides.pop(k) for k in list(overrides) if k in cfg.backbone})
  cfg.update(overrides)
  return cfg


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _captured(model, variables, x, names, **kwargs):
  """(feature, intermediates, {module name: its __call__ output}) in eval mode."""
  (feature, inter), state = model.apply(
      variables, x, train=False, mutable=["intermediates"],
      capture_intermediates=lambda mdl, method: mdl.name in names and method == "__call__", **kwargs)
  return feature, inter, {k: v["__call__"][0] for k, v in state["intermediates"].items()}


def test_full_size_tree_and_count_against_plain_resnet50():
  """Trunk + 3 x (layer3[1:] + layer4) + 8 BNNecks, counted from the plain ResNet-50 tree."""
  x = jnp.zeros((1, 64, 32, 3))
  model = build_model(_config(width=64), 751)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))["params"]
  plain = jax.eval_shape(lambda: BACKBONES["resnet50"]().init(jax.random.key(0), x, train=False))["params"]
  trunk_names = {"conv1", "bn1", "layer3_0"} | {n for n in plain if n[:6] in ("layer1", "layer2")}
  branch_names = set(plain) - trunk_names
  assert branch_names == {f"layer3_{j}" for j in range(1, 6)} | {f"layer4_{j}" for j in range(3)}
  assert set(params) == {"backbone", "b1", "b2", "b3"} | {f"{r}_head" for r in REGIONS}
  shapes = lambda tree: jax.tree.map(lambda a: a.shape, tree)
  assert shapes(params["backbone"]) == shapes({n: plain[n] for n in trunk_names})
  for branch in ("b1", "b2", "b3"):  # same shapes, so ImageNet weights copy into each branch
    assert shapes(params[branch]) == shapes({n: plain[n] for n in branch_names})
  trunk = _count({n: plain[n] for n in trunk_names})
  branch = _count({n: plain[n] for n in branch_names})
  head = 2048 + 2048 * 751  # neck scale (no bias), classifier kernel
  assert trunk + branch == 23_508_032  # torchvision ResNet-50 without fc
  assert _count(params) == trunk + 3 * branch + 8 * head == 76_930_112


def test_b1_layer4_halves_the_map_and_part_stride_follows_last_stride():
  x = jnp.zeros((1, 128, 64, 3))
  for last_stride, part_height in ((1, 8), (2, 4)):
    model = build_model(_config(last_stride=last_stride), NUM_CLASSES)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    _, inter, maps = jax.eval_shape(
        lambda v: _captured(model, v, x, ("backbone", "b1", "b2", "b3")), variables)
    assert maps["backbone"][0].shape == (1, 8, 4, 128)  # after layer3_0: stride 16
    assert maps["b1"][0].shape == (1, 4, 2, 256)
    assert maps["b2"][0].shape == maps["b3"][0].shape == (1, part_height, part_height // 2, 256)
    assert inter["layer4"].shape == maps["b1"][0].shape
    assert set(maps["b1"][1]) == {"layer3", "layer4"} and set(maps["backbone"][1]) == {
        "stem", "layer1", "layer2"}


@functools.lru_cache(maxsize=None)
def _tiny_step(fill):
  """One jitted train step of a width-8 MGN-18 on 64 x 32 inputs, shared by the tests below.

  Loss: CE on every branch logit + mean square of every branch feature, as the
  objective uses them. Returns (grads, feature, intermediates, captured module
  outputs, cosine-classifier logits). MGN-18 (14 blocks against MGN-50's 32)
  keeps the XLA compile short; the split is the same code for both block
  types, and the MGN-50 tests above check its tree and shapes. b2/b3 maps are
  4 x 2, so the 3 stripes overlap by a row; b1's is 2 x 1.
  """
  model = build_model(_config(backbone="resnet18"), NUM_CLASSES)
  cosine_model = build_model(_config(backbone="resnet18"), NUM_CLASSES, cosine_classifier=True)
  x = np.random.default_rng(1).normal(size=(2, 64, 32, 3)).astype(np.float32)
  variables = fill(model, x)
  labels = jnp.array([1, 3])
  names = tuple(f"{r}_head" for r in REGIONS) + ("b1", "b2", "b3")

  @jax.jit
  def step(params, batch_stats):
    def loss_fn(p):
      (feature, inter), state = model.apply(
          {"params": p, "batch_stats": batch_stats}, x, train=True,
          mutable=["batch_stats", "intermediates"],
          capture_intermediates=lambda mdl, method: mdl.name in names and method == "__call__")
      ce = [jnp.mean(jax.nn.logsumexp(z, -1) - z[jnp.arange(2), labels]) for z in inter["branch_logits"]]
      metric = [jnp.mean(f ** 2) for f in inter["branch_features"]]
      captured = {k: v["__call__"][0] for k, v in state["intermediates"].items()}
      return sum(ce) / len(ce) + sum(metric) / len(metric), (feature, inter, captured)
    grads, aux = jax.grad(loss_fn, has_aux=True)(params)
    cosines = cosine_model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
    return grads, *aux, cosines[1]["branch_logits"]

  return jax.device_get(step(variables["params"], variables["batch_stats"]))


def test_contract_shapes_stripes_and_test_feature(random_variables):
  _, feature, inter, out, _ = _tiny_step(random_variables)
  heads = tuple(f"{r}_head" for r in REGIONS)
  c = 64  # ResNet-18 width 8: 8 * 8 channels
  assert feature.shape == (2, 8 * c)
  assert [a.shape for a in inter["branch_logits"]] == [(2, NUM_CLASSES)] * 8
  assert [a.shape for a in inter["branch_features"]] == [(2, c)] * 3 + [(2, 2 * c), (2, 3 * c)]
  for key in ("stem", "layer1", "layer2", "layer3", "layer4", "logits", "pre_neck", "neck"):
    assert key in inter
  np.testing.assert_array_equal(inter["logits"], out["b1_head"]["logits"])
  np.testing.assert_array_equal(inter["layer4"], out["b1"][0])
  # Average pooling by hand over the stripes' row ranges (4 rows: halves; thirds overlapping by a row).
  b1, b2, b3 = (np.asarray(out[b][0]) for b in ("b1", "b2", "b3"))
  assert b1.shape[1:3] == (2, 1) and b2.shape[1:3] == b3.shape[1:3] == (4, 2)
  rows = {"b1": (b1, 0, 2), "b2": (b2, 0, 4), "b21": (b2, 0, 2), "b22": (b2, 2, 4),
          "b3": (b3, 0, 4), "b31": (b3, 0, 2), "b32": (b3, 1, 3), "b33": (b3, 2, 4)}
  for r in REGIONS:
    fmap, start, end = rows[r]
    np.testing.assert_allclose(out[f"{r}_head"]["pre_neck"], fmap[:, start:end].mean(axis=(1, 2)),
                               rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(feature, np.concatenate([out[h]["neck"] for h in heads], -1), rtol=1e-6)
  pre = [out[h]["pre_neck"] for h in heads]
  np.testing.assert_allclose(inter["pre_neck"], np.concatenate(pre, -1), rtol=1e-6)
  for got, want in zip(inter["branch_features"],
                       pre[:3] + [np.concatenate(pre[3:5], -1), np.concatenate(pre[5:], -1)]):
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_cosine_classifier_gives_cosines(random_variables):
  for logits in _tiny_step(random_variables)[-1]:
    assert logits.shape == (2, NUM_CLASSES)
    assert np.all(np.abs(logits) <= 1 + 1e-5) and np.any(np.abs(logits) > 1e-3)


def test_train_step_gradients_are_finite_and_reach_every_parameter(random_variables):
  flat = flax.traverse_util.flatten_dict(_tiny_step(random_variables)[0])
  for path, g in flat.items():
    assert np.all(np.isfinite(g)), path
    assert np.any(g != 0), path
  assert {p[0] for p in flat} == {"backbone", "b1", "b2", "b3"} | {f"{r}_head" for r in REGIONS}
  assert ("backbone", "conv1", "kernel") in flat


def test_config_errors_and_reid_default():
  assert model_config().meta == "reid"
  model = build_model(model_config(), NUM_CLASSES)
  assert isinstance(model, ReID) and isinstance(build_model(_config(), NUM_CLASSES), MGN)
  with pytest.raises(ConfigError, match="resnest50"):
    build_model(_config(backbone="resnest50"), NUM_CLASSES)
  with pytest.raises(ConfigError, match="meta"):
    build_model(_config(meta="abd"), NUM_CLASSES)
  for key, value in (("head", "linear"), ("part_dim", 128), ("embed_dim", 64)):
    with pytest.raises(ConfigError, match=key):
      build_model(_config(**{key: value}), NUM_CLASSES)
  with pytest.raises(ConfigError, match="num_parts"):
    build_model(_config(meta="reid", num_parts=4), NUM_CLASSES)


def test_resnet_block_range_composes_to_the_full_network(random_variables):
  """The trunk/branch split MGN relies on: running [.., layer3_0] then [layer3_1, ..] is the whole ResNet."""
  full = BACKBONES["resnet18"](width=8, ibn="a")
  x = np.random.default_rng(3).normal(size=(2, 64, 32, 3)).astype(np.float32)
  variables = random_variables(full, x)
  want, want_stages = full.apply(variables, x, train=False)
  trunk = BACKBONES["resnet18"](width=8, ibn="a", last=(3, 0))
  rest = BACKBONES["resnet18"](width=8, ibn="a", first=(3, 1))
  split = lambda names: {col: {n: tree[n] for n in names if n in tree} for col, tree in variables.items()}
  trunk_names = ("conv1", "bn1", "layer1_0", "layer1_1", "layer2_0", "layer2_1", "layer3_0")
  shared, stages = trunk.apply(split(trunk_names), x, train=False)
  got, rest_stages = rest.apply(split(("layer3_1", "layer4_0", "layer4_1")), shared, train=False)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert set(stages) == {"stem", "layer1", "layer2"} and set(rest_stages) == {"layer3", "layer4"}
  np.testing.assert_allclose(rest_stages["layer3"], want_stages["layer3"], rtol=1e-5, atol=1e-6)
