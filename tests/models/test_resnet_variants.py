"""ResNet variants: ResNeXt, IBN-b, non-local blocks (counts, placement, numerics, training)."""
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.errors import ConfigError
from jreid.models.backbones import BACKBONES
from jreid.models.backbones.non_local import NonLocal
from jreid.models.backbones.resnet import Bottleneck, ResNet

# torchvision's resnext50_32x4d (25,028,904) minus its 2048*1000+1000 fc.
RESNEXT50_TORCHVISION = 25_028_904 - 2_049_000
RESNET50 = 25_557_032 - 2_049_000


def _variables(name, **kwargs):
  model = BACKBONES[name](**kwargs)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 32, 3)),
                                           train=False))


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _resnext_formula(blocks, groups=32, width_per_group=4):
  """From the architecture alone: grouped 3x3 has k*k*(c/g)*c weights; BN 2*c."""
  total = 7 * 7 * 3 * 64 + 2 * 64
  cin = 64
  for i, n in enumerate(blocks):
    planes = 64 * 2 ** i
    inner = planes * width_per_group * groups // 64
    cout = 4 * planes
    for j in range(n):
      total += cin * inner + 9 * (inner // groups) * inner + inner * cout
      total += 2 * (inner + inner + cout)
      if j == 0:
        total += cin * cout + 2 * cout
      cin = cout
  return total


def _non_local_formula(c):
  """theta, phi, g: C -> C/2 with bias; W: C/2 -> C with bias, then BN (2*C)."""
  half = c // 2
  return 3 * (c * half + half) + (half * c + c) + 2 * c


def test_resnext_counts():
  assert _resnext_formula((3, 4, 6, 3)) == RESNEXT50_TORCHVISION
  assert _count(_variables("resnext50")["params"]) == RESNEXT50_TORCHVISION
  # No torchvision 101 32x4d: the formula is the reference (timm's 44,177,704 minus fc).
  assert _count(_variables("resnext101")["params"]) == _resnext_formula((3, 4, 23, 3))
  assert _resnext_formula((3, 4, 23, 3)) == 42_128_704


def test_resnext_grouped_conv_shapes():
  params = _variables("resnext50")["params"]
  # layer1: inner 128 in 32 groups of 4; layer4: inner 1024 in 32 groups of 32.
  assert params["layer1_0"]["conv2"]["kernel"].shape == (3, 3, 4, 128)
  assert params["layer4_2"]["conv2"]["kernel"].shape == (3, 3, 32, 1024)
  assert params["layer4_2"]["conv3"]["kernel"].shape == (1, 1, 1024, 2048)
  tiny = _variables("resnext50", width=8)["params"]  # 4 groups of 4 at width 8
  assert tiny["layer1_0"]["conv2"]["kernel"].shape == (3, 3, 4, 16)


def test_ibn_b_count_and_placement():
  variables = _variables("resnet50", ibn="b")
  # Stem IN replaces bn1 (same 2*64); IN after the last block of layer1 (256) and layer2 (512).
  assert _count(variables["params"]) == RESNET50 + 2 * 256 + 2 * 512
  params, stats = variables["params"], variables["batch_stats"]
  assert set(params["bn1"]) == {"scale", "bias"} and "bn1" not in stats
  with_in = {name for name, block in params.items() if "IN" in block}
  assert with_in == {"layer1_2", "layer2_3"}
  for name, block in params.items():  # no IBN-a anywhere
    if name.startswith("layer"):
      assert set(block["bn1"]) == {"scale", "bias"}, name
  assert _count(_variables("resnet50", ibn=True)["params"]) == RESNET50  # True is still IBN-a
  ibn_a = _variables("resnet50", width=8, ibn="a")["params"]
  assert set(ibn_a["layer3_0"]["bn1"]) == {"IN", "BN"} and "IN" not in ibn_a["layer1_2"]
  assert jax.tree.structure(_variables("resnet50", width=8, ibn="")) == jax.tree.structure(
      _variables("resnet50", width=8))
  with pytest.raises(ConfigError):
    _variables("resnet50", ibn="c")


def test_non_local_count_and_positions():
  params = _variables("resnet50", non_local=True)["params"]
  assert _count(params) == RESNET50 + 2 * _non_local_formula(512) + 3 * _non_local_formula(1024)
  assert {name for name in params if name.startswith("NL")} == {
      "NL_2_0", "NL_2_1", "NL_3_0", "NL_3_1", "NL_3_2"}
  assert set(params["NL_2_0"]) == {"theta", "phi", "g", "W_conv", "W_bn"}
  assert params["NL_3_0"]["theta"]["kernel"].shape == (1, 1, 1024, 512)
  assert set(params["NL_3_0"]["W_conv"]) == {"kernel", "bias"}
  with pytest.raises(ConfigError):
    _variables("resnet152", non_local=True)  # FastReID defines no positions for 152


def test_non_local_sits_after_the_last_blocks():
  # Record the order in which the top-level children are called (traced only, no compile).
  model = BACKBONES["resnet50"](width=8, non_local=True)
  x = jnp.zeros((1, 64, 32, 3))
  calls = []

  def record(next_fun, args, kwargs, context):
    name = context.module.name
    if context.method_name == "__call__" and name and name.startswith(("layer2", "NL_2")):
      calls.append(name)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  assert calls == ["layer2_0", "layer2_1", "layer2_2", "NL_2_0", "layer2_3", "NL_2_1"]


def test_non_local_is_identity_at_init_and_matches_numpy():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 4, 3, 6)), jnp.float32)
  block = NonLocal()
  variables = block.init(jax.random.key(0), x, train=False)
  np.testing.assert_array_equal(variables["params"]["W_bn"]["scale"], 0)
  np.testing.assert_allclose(block.apply(variables, x, train=False), x, atol=1e-6)
  out, _ = block.apply(variables, x, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(out, x, atol=1e-6)

  # With W's BN at scale 1 (eval, unit running variance) the block computes
  # x + W (1/N) (theta phi^T) g, checked with explicit numpy loops over positions.
  params = jax.tree.map(np.asarray, variables["params"])
  params["W_bn"]["scale"] = np.ones(6, np.float32)
  y = block.apply({**variables, "params": params}, x, train=False)
  x64 = np.asarray(x, np.float64).reshape(2, 12, 6)
  lin = lambda p, v: v @ p["kernel"][0, 0].astype(np.float64) + p["bias"]
  ref = np.empty_like(x64)
  for b in range(2):
    theta, phi, g = (lin(params[k], x64[b]) for k in ("theta", "phi", "g"))
    for i in range(12):
      agg = sum(float(theta[i] @ phi[j]) * g[j] for j in range(12)) / 12
      ref[b, i] = x64[b, i] + lin(params["W_conv"], agg) / np.sqrt(1 + 1e-5)
  np.testing.assert_allclose(y, ref.reshape(y.shape), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,kwargs", [("resnext50", {}), ("resnet50", {"non_local": True}),
                                         ("resnet50", {"ibn": "b"}), ("resnet152", {})])
@pytest.mark.parametrize("last_stride", [1, 2])
def test_output_strides(name, kwargs, last_stride):
  model = BACKBONES[name](width=8, last_stride=last_stride, **kwargs)
  x = jnp.zeros((2, 128, 64, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  fmap, inter = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  final = 16 * last_stride
  assert fmap.shape == (2, 128 // final, 64 // final, 256)
  for key, stride, c in (("layer1", 4, 32), ("layer2", 8, 64), ("layer3", 16, 128)):
    assert inter[key].shape == (2, 128 // stride, 64 // stride, c), key


def test_tiny_train_step_all_options(random_variables, train_step):
  # Grouped 3x3 (4 groups at width 8), IBN-b and one non-local block in layer2
  # and layer3, in one small model to keep compilation short.
  model = ResNet(block=Bottleneck, stage_sizes=(1, 2, 2, 1), width=8, ibn="b", non_local=True,
                 non_local_stages=(0, 1, 1, 0), groups=32, width_per_group=4)
  rng = np.random.default_rng(0)
  scales, offsets = np.array([1.0, 5.0, 0.2, 2.0]), np.array([0.0, 3.0, -2.0, 1.0])
  x = jnp.asarray(rng.normal(size=(4, 32, 16, 3)) * scales[:, None, None, None]
                  + offsets[:, None, None, None], jnp.float32)
  variables = random_variables(model, x)
  is_instance_norm = lambda module, method: isinstance(module, nn.InstanceNorm)

  loss, updates, flat = train_step(model, x, variables, capture_intermediates=is_instance_norm)
  assert np.isfinite(loss)
  assert all(np.all(np.isfinite(g)) for g in flat.values())
  for path in (("NL_2_0", "theta", "kernel"), ("NL_3_0", "W_bn", "scale"),
               ("layer1_0", "IN", "scale"), ("layer2_1", "IN", "scale"),
               ("layer2_0", "conv2", "kernel"), ("bn1", "scale")):
    assert np.any(np.asarray(flat[path]) != 0), path
  assert flat[("layer2_0", "conv2", "kernel")].shape == (3, 3, 8, 32)  # 4 groups
  old = variables["batch_stats"]["NL_3_0"]["W_bn"]["mean"]
  assert not np.allclose(old, updates["batch_stats"]["NL_3_0"]["W_bn"]["mean"])

  # IBN-b placement: the InstanceNorms are exactly the stem's bn1 and the IN after
  # the last block of layer1 and layer2; with scale 1 and bias 0 each normalises
  # every sample's every channel to mean 0, variance 1 over H, W, whatever the
  # image's own scale and offset.
  captured = flax.traverse_util.flatten_dict(updates["intermediates"])
  assert {path[:-1] for path in captured} == {("bn1",), ("layer1_0", "IN"), ("layer2_1", "IN")}
  for out in captured.values():
    out = np.asarray(out[0], np.float64)
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(out.var(axis=(1, 2)), 1, atol=1e-2)
