"""ResNeSt-50: parameter count, split attention against numpy, avg-down pooling, strides, training."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.errors import ConfigError
from jreid.models.backbones import BACKBONES
from jreid.models.backbones.resnest import ResNeSt, SplitAttention, _avg_down

# The official ResNeSt-50 (radix 2, deep stem 32, avg-down, avd) has 27,483,240
# parameters with its 2048*1000+1000 classifier.
RESNEST50 = 27_483_240 - 2_049_000


def _formula(blocks=(3, 4, 6, 3), radix=2):
  """From the architecture description alone (conv k*k*(cin/groups)*cout, BN 2*c)."""
  total = 9 * 3 * 32 + 2 * 32 + 9 * 32 * 32 + 2 * 32 + 9 * 32 * 64 + 2 * 64
  cin = 64
  for i, n in enumerate(blocks):
    planes = 64 * 2 ** i
    inter = max(planes * radix // 4, 32)
    for j in range(n):
      total += cin * planes + 2 * planes                      # conv1, bn1
      total += 9 * (planes // radix) * planes * radix         # grouped split conv
      total += 2 * planes * radix                             # bn0
      total += planes * inter + inter + 2 * inter             # fc1 (bias), bn1
      total += inter * planes * radix + planes * radix        # fc2 (bias)
      total += planes * 4 * planes + 2 * 4 * planes           # conv3, bn3
      if j == 0:
        total += cin * 4 * planes + 2 * 4 * planes            # avg-down 1x1 conv, bn
      cin = 4 * planes
  return total


def test_param_count():
  model = BACKBONES["resnest50"]()
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 32, 3)),
                                                train=False))
  count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(variables["params"]))
  assert count == RESNEST50 == _formula()
  assert "downsample_conv" in variables["params"]["layer1_0"]  # 64 -> 256 at stride 1
  with pytest.raises(ConfigError):
    jax.eval_shape(lambda: BACKBONES["resnest50"](ibn=True).init(
        jax.random.key(0), jnp.zeros((1, 64, 32, 3)), train=False))


def test_split_attention_matches_numpy():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 5, 4, 6)), jnp.float32)
  block = SplitAttention(4, radix=2)
  shapes = jax.eval_shape(lambda: block.init(jax.random.key(0), x, train=False))
  params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32) * 0.5,
                        shapes["params"])
  stats = jax.tree.map(lambda s: np.abs(rng.normal(size=s.shape)).astype(np.float32) + 0.5,
                       shapes["batch_stats"])
  y = block.apply({"params": params, "batch_stats": stats}, x, train=False)

  def bn(v, p, s):
    return (v - s["mean"]) / np.sqrt(s["var"] + 1e-5) * p["scale"] + p["bias"]

  x64 = np.asarray(x, np.float64)
  k = params["conv"]["kernel"]  # (3, 3, 3, 8): groups of 3 inputs -> 4 outputs each
  xp = np.pad(x64, ((0, 0), (1, 1), (1, 1), (0, 0)))
  conv = np.zeros((2, 5, 4, 8))
  for o in range(8):
    g = o // 4
    for u in range(3):
      for v in range(3):
        conv[..., o] += xp[:, u:u + 5, v:v + 4, 3 * g:3 * g + 3] @ k[u, v, :, o]
  conv = np.maximum(bn(conv, params["bn0"], stats["bn0"]), 0)
  branches = [conv[..., :4], conv[..., 4:]]
  gap = (branches[0] + branches[1]).mean(axis=(1, 2))
  hidden = gap @ params["fc1"]["kernel"][0, 0] + params["fc1"]["bias"]
  hidden = np.maximum(bn(hidden, params["bn1"], stats["bn1"]), 0)
  logits = hidden @ params["fc2"]["kernel"][0, 0] + params["fc2"]["bias"]
  a = np.exp(logits[:, :4]) / (np.exp(logits[:, :4]) + np.exp(logits[:, 4:]))
  ref = a[:, None, None] * branches[0] + (1 - a)[:, None, None] * branches[1]
  np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("h,w", [(6, 4), (5, 3)])
def test_avg_down_is_ceil_mode_without_padding_in_the_mean(h, w):
  x = np.arange(2 * h * w, dtype=np.float32).reshape(1, h, w, 2)
  ref = np.array([[[x[0, i:i + 2, j:j + 2].mean(axis=(0, 1)) for j in range(0, w, 2)]
                   for i in range(0, h, 2)]])
  np.testing.assert_allclose(_avg_down(jnp.asarray(x), 2), ref, rtol=1e-6)


@pytest.mark.parametrize("last_stride", [1, 2])
def test_output_strides(last_stride):
  model = BACKBONES["resnest50"](width=8, last_stride=last_stride, non_local=True)
  x = jnp.zeros((2, 128, 64, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  fmap, inter = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  final = 16 * last_stride
  assert fmap.shape == (2, 128 // final, 64 // final, 256)
  for key, stride, c in (("stem", 4, 8), ("layer1", 4, 32), ("layer2", 8, 64),
                         ("layer3", 16, 128)):
    assert inter[key].shape == (2, 128 // stride, 64 // stride, c), key
  assert {n for n in variables["params"] if n.startswith("NL")} == {
      "NL_2_0", "NL_2_1", "NL_3_0", "NL_3_1", "NL_3_2"}


def test_tiny_train_step(random_variables, train_step):
  model = ResNeSt(stage_sizes=(1, 1, 1, 1), width=8)
  x = jax.random.normal(jax.random.key(1), (4, 32, 16, 3))
  variables = random_variables(model, x)

  loss, updates, flat = train_step(model, x, variables)
  assert np.isfinite(loss)
  assert all(np.all(np.isfinite(g)) for g in flat.values())
  for path in (("conv1_0", "kernel"), ("layer3_0", "conv2", "fc1", "kernel"),
               ("layer2_0", "downsample_conv", "kernel")):
    assert np.any(np.asarray(flat[path]) != 0), path
  old = variables["batch_stats"]["layer2_0"]["conv2"]["bn0"]["mean"]
  assert not np.allclose(old, updates["batch_stats"]["layer2_0"]["conv2"]["bn0"]["mean"])
