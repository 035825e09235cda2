"""DINO's head: forward vs numpy and PyTorch, the fixed weight norm, init, and the first-epoch last-layer freeze."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jreid import config_blocks
from jreid.core import tree_paths
from jreid.errors import ConfigError
from jreid.models import dino_head
from jreid.models.dino_head import DINOHead
from jreid.train import durations, optim

IN, HIDDEN, BOTTLENECK, OUT = 6, 16, 8, 10


def _head_and_params(seed=0, **kwargs):
  head = DINOHead(OUT, hidden=HIDDEN, bottleneck=BOTTLENECK, **kwargs)
  x = np.random.default_rng(seed).normal(size=(4, IN)).astype(np.float32)
  params = head.init(jax.random.key(seed), x)["params"]
  # Non-zero biases, so the forward test sees them.
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: p + 0.05 * (1 + np.arange(p.size, dtype=np.float32).reshape(p.shape))
      if tree_paths.path_name(path).endswith("bias") else p, params)
  return head, params, x


def _erf_gelu(x):
  return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _numpy_head(params, x):
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  h = _erf_gelu(x @ p["mlp_0"]["kernel"] + p["mlp_0"]["bias"])
  h = _erf_gelu(h @ p["mlp_2"]["kernel"] + p["mlp_2"]["bias"])
  h = h @ p["mlp_4"]["kernel"] + p["mlp_4"]["bias"]
  h = h / np.maximum(np.linalg.norm(h, axis=-1, keepdims=True), 1e-12)
  v = p["last_layer"]["weight_v"]
  return h @ (v / np.linalg.norm(v, axis=0, keepdims=True))


def test_params_shapes_and_init():
  head, params, _ = _head_and_params()
  shapes = {name: leaf.shape for name, leaf in tree_paths.named_leaves(params)}
  assert shapes == {"mlp_0/kernel": (IN, HIDDEN), "mlp_0/bias": (HIDDEN,),
                    "mlp_2/kernel": (HIDDEN, HIDDEN), "mlp_2/bias": (HIDDEN,),
                    "mlp_4/kernel": (HIDDEN, BOTTLENECK), "mlp_4/bias": (BOTTLENECK,),
                    "last_layer/weight_v": (BOTTLENECK, OUT)}  # no weight_g: the norm is fixed
  big = DINOHead(512, hidden=256, bottleneck=256).init(jax.random.key(1), np.zeros((1, 8), np.float32))
  big = big["params"]
  kernel = np.asarray(big["mlp_2"]["kernel"])
  assert np.abs(kernel).max() <= 0.04 + 1e-7            # trunc normal std 0.02, cut at 2 std
  assert 0.015 < kernel.std() < 0.02                    # truncation shrinks the std to 0.88 x 0.02
  np.testing.assert_array_equal(big["mlp_0"]["bias"], 0.0)
  v = np.asarray(big["last_layer"]["weight_v"])
  bound = 1 / math.sqrt(256)                            # torch.nn.Linear's default init
  assert np.abs(v).max() <= bound
  np.testing.assert_allclose(v.std(), bound / math.sqrt(3), rtol=0.02)


def test_forward_equals_numpy():
  head, params, x = _head_and_params()
  np.testing.assert_allclose(head.apply({"params": params}, x), _numpy_head(params, x), rtol=1e-5,
                             atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated")
def test_forward_equals_a_pytorch_dino_head():
  torch = pytest.importorskip("torch")
  head, params, x = _head_and_params(2)
  t = lambda a: torch.from_numpy(np.asarray(a).copy())
  mlp = torch.nn.Sequential(torch.nn.Linear(IN, HIDDEN), torch.nn.GELU(), torch.nn.Linear(HIDDEN, HIDDEN),
                            torch.nn.GELU(), torch.nn.Linear(HIDDEN, BOTTLENECK))
  last = torch.nn.utils.weight_norm(torch.nn.Linear(BOTTLENECK, OUT, bias=False))
  with torch.no_grad():
    for index in (0, 2, 4):
      mlp[index].weight.copy_(t(params[f"mlp_{index}"]["kernel"]).T)
      mlp[index].bias.copy_(t(params[f"mlp_{index}"]["bias"]))
    last.weight_g.fill_(1)
    last.weight_v.copy_(t(params["last_layer"]["weight_v"]).T)
    expected = last(torch.nn.functional.normalize(mlp(t(x)), dim=-1, p=2)).numpy()
  np.testing.assert_allclose(head.apply({"params": params}, x), expected, rtol=1e-5, atol=1e-6)


def test_weight_norm_columns_have_norm_one_whatever_the_scale_of_v():
  head, params, x = _head_and_params(3)
  scaled = jax.tree_util.tree_map_with_path(
      lambda path, p: p * 7.5 if tree_paths.path_name(path) == "last_layer/weight_v" else p, params)
  np.testing.assert_allclose(head.apply({"params": scaled}, x), head.apply({"params": params}, x),
                             rtol=1e-5, atol=1e-7)
  weight = dino_head.weight_norm(scaled["last_layer"]["weight_v"])
  np.testing.assert_allclose(np.linalg.norm(weight, axis=0), np.ones(OUT), rtol=1e-6)
  logits = head.apply({"params": params}, x)
  assert np.all(np.abs(logits) <= 1 + 1e-6)  # cosines between unit vectors


def test_the_norm_gets_no_gradient_when_fixed_and_trains_when_not():
  head, params, x = _head_and_params(4)
  grads = jax.grad(lambda p: jnp.sum(head.apply({"params": p}, x) ** 2))(params)
  assert set(grads["last_layer"]) == {"weight_v"}
  free = DINOHead(OUT, hidden=HIDDEN, bottleneck=BOTTLENECK, norm_last_layer=False)
  free_params = free.init(jax.random.key(0), x)["params"]
  np.testing.assert_array_equal(free_params["last_layer"]["weight_g"], np.ones((1, OUT)))
  free_params = dict(free_params, last_layer=dict(free_params["last_layer"],
                                                  weight_g=np.full((1, OUT), 2.0, np.float32)))
  twice = free.apply({"params": free_params}, x)
  np.testing.assert_allclose(twice, 2 * head.apply({"params": dict(
      free_params, last_layer={"weight_v": free_params["last_layer"]["weight_v"]})}, x), rtol=1e-6)
  grads = jax.grad(lambda p: jnp.sum(free.apply({"params": p}, x) ** 2))(free_params)
  assert np.abs(np.asarray(grads["last_layer"]["weight_g"])).sum() > 0


def test_normalize_of_zero_is_zero_as_torch():
  np.testing.assert_array_equal(dino_head.l2_normalize(jnp.zeros((2, 3))), np.zeros((2, 3)))
  np.testing.assert_allclose(dino_head.l2_normalize(jnp.array([[3.0, 4.0]])), [[0.6, 0.8]])


def test_one_layer_head_and_bad_layers():
  params = DINOHead(OUT, bottleneck=BOTTLENECK, layers=1).init(
      jax.random.key(0), np.zeros((1, IN), np.float32))["params"]
  assert sorted(params) == ["last_layer", "mlp"] and params["mlp"]["kernel"].shape == (IN, BOTTLENECK)
  with pytest.raises(ConfigError, match="layers=0"):
    DINOHead(OUT, layers=0).init(jax.random.key(0), np.zeros((1, IN), np.float32))


def test_last_layer_is_frozen_for_the_first_epoch_by_the_shared_optimiser():
  """optim.freeze = LAST_LAYER, optim.freeze_epochs = 1: 10 images at batch 4 freeze it 3 steps."""
  config = ml_collections.ConfigDict(dict(
      data=dict(train="synth"), train=config_blocks.train(batch_size=4, steps=6),
      optim=config_blocks.optim(name="adamw", lr=0.01, weight_decay=0.04, schedule="constant",
                                freeze=dino_head.LAST_LAYER, freeze_epochs=1.0)))
  resolved, _ = durations.resolve(config, images=10)
  assert resolved.optim.freeze_steps == 3
  head, params, x = _head_and_params(5)
  params = {"student": {"backbone": {"w": jnp.ones((IN, IN))}, "head": params}}
  tx, _ = optim.build(resolved.optim, total_steps=6)

  def loss(p):
    feature = x @ p["student"]["backbone"]["w"]
    return jnp.sum(head.apply({"params": p["student"]["head"]}, feature) ** 2)

  state = tx.init(params)
  step = jax.jit(lambda p, s: (lambda g: tx.update(g, s, p))(jax.grad(loss)(p)))
  frozen = tree_paths.matcher(dino_head.LAST_LAYER)
  history = [params]
  for _ in range(6):
    updates, state = step(params, state)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    history.append(params)
  for name, _ in tree_paths.named_leaves(params):
    leaf = lambda tree: dict(tree_paths.named_leaves(tree))[name]
    moved = [not np.array_equal(leaf(history[i]), leaf(history[i + 1])) for i in range(6)]
    if frozen(name):
      assert name == "student/head/last_layer/weight_v"
      assert moved == [False, False, False, True, True, True], name
    else:
      assert all(moved), name
