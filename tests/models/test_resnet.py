"""ResNet backbones and the layers they are made of (Conv, BN, IBN, stem pooling)."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.models import layers
from jreid.models.backbones import BACKBONES
from jreid.models.backbones.resnet import Bottleneck, ResNet, stem_max_pool

# torchvision's parameter counts (sum of p.numel() over parameters(), i.e. no
# running statistics) minus the 1000-way fc (2048*1000+1000 for ResNet-50/101,
# 512*1000+1000 for ResNet-18/34).
TORCHVISION_COUNTS = {
    "resnet18": 11_689_512 - 513_000,
    "resnet34": 21_797_672 - 513_000,
    "resnet50": 25_557_032 - 2_049_000,
    "resnet101": 44_549_160 - 2_049_000,
    "resnet152": 60_192_808 - 2_049_000,
}


def _abstract_variables(name, **kwargs):
  model = BACKBONES[name](**kwargs)
  x = jnp.zeros((1, 64, 32, 3))
  return jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))


def _count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _formula_count(blocks, bottleneck, width=64):
  """Conv k*k*cin*cout, BN 2*c, counted from the architecture description alone."""
  conv = lambda k, cin, cout: k * k * cin * cout
  total = conv(7, 3, width) + 2 * width
  cin = width
  for i, n in enumerate(blocks):
    planes = width * 2 ** i
    cout = planes * (4 if bottleneck else 1)
    for j in range(n):
      if bottleneck:
        total += conv(1, cin, planes) + conv(3, planes, planes) + conv(1, planes, cout)
        total += 2 * (planes + planes + cout)
      else:
        total += conv(3, cin, planes) + conv(3, planes, planes) + 2 * (planes + planes)
      if j == 0 and (i > 0 or cin != cout):
        total += conv(1, cin, cout) + 2 * cout
      cin = cout
  return total


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTS))
def test_param_count_matches_torchvision(name):
  variables = _abstract_variables(name)
  assert _count(variables["params"]) == TORCHVISION_COUNTS[name]
  blocks = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3),
            "resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3),
            "resnet152": (3, 8, 36, 3)}[name]
  bottleneck = name not in ("resnet18", "resnet34")
  assert _formula_count(blocks, bottleneck=bottleneck) == TORCHVISION_COUNTS[name]


def test_ibn_resnet50_count_equals_plain():
  # IN affine (half) + BN affine (other half) = 2*C, the same as the BN replaced.
  assert _count(_abstract_variables("resnet50", ibn=True)["params"]) == TORCHVISION_COUNTS["resnet50"]


def test_params_hold_only_affine_norm_and_kernels():
  variables = _abstract_variables("resnet50", width=8, ibn=True)
  for path in flax.traverse_util.flatten_dict(variables["params"]):
    assert path[-1] in ("kernel", "scale", "bias"), path
    if path[-1] == "bias":
      assert "bn" in path[-2] or path[-2] in ("IN", "BN"), path  # convs have no bias
  for path in flax.traverse_util.flatten_dict(variables["batch_stats"]):
    assert path[-1] in ("mean", "var"), path
    assert "IN" not in path, path  # instance norm keeps no running statistics


def test_block_naming_is_the_documented_torch_mapping():
  params = _abstract_variables("resnet50", width=8)["params"]
  assert set(params) == {"conv1", "bn1"} | {
      f"layer{i}_{j}" for i, n in zip(range(1, 5), (3, 4, 6, 3)) for j in range(n)}
  assert set(params["layer1_0"]) == {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3",
                                     "downsample_conv", "downsample_bn"}
  assert set(params["layer1_1"]) == {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3"}
  assert params["layer2_0"]["conv2"]["kernel"].shape == (3, 3, 16, 16)  # HWIO, width 8
  basic = _abstract_variables("resnet18", width=8)["params"]
  assert set(basic["layer1_0"]) == {"conv1", "bn1", "conv2", "bn2"}  # 8 -> 8, stride 1
  assert set(basic["layer2_0"]) == {"conv1", "bn1", "conv2", "bn2",
                                    "downsample_conv", "downsample_bn"}


def test_ibn_in_every_block_of_layer1_to_3_only():
  params = _abstract_variables("resnet50", width=8, ibn=True)["params"]
  assert set(params["bn1"]) == {"scale", "bias"}
  for name, block in params.items():
    if name.startswith("layer"):
      ibn = not name.startswith("layer4")
      assert (set(block["bn1"]) == {"IN", "BN"}) == ibn, name
      assert set(block["bn2"]) == {"scale", "bias"}


@pytest.mark.parametrize("name,channels", [("resnet18", 64), ("resnet50", 256)])
@pytest.mark.parametrize("last_stride", [1, 2])
def test_output_strides(name, channels, last_stride):
  model = BACKBONES[name](width=8, last_stride=last_stride)
  x = jnp.zeros((2, 128, 64, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  (fmap, inter) = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  final = 16 * last_stride
  assert fmap.shape == (2, 128 // final, 64 // final, channels)
  expansion = channels // 64
  for key, stride, c in (("stem", 4, 8), ("layer1", 4, 8 * expansion),
                         ("layer2", 8, 16 * expansion), ("layer3", 16, 32 * expansion),
                         ("layer4", final, 64 * expansion)):
    assert inter[key].shape == (2, 128 // stride, 64 // stride, c), key


def test_tiny_train_step_updates_stats_and_has_finite_grads(random_variables, train_step):
  # One block per stage keeps XLA compilation short yet covers the bottleneck,
  # the downsample shortcut, IBN and the layer4 switch back to BN.
  model = ResNet(block=Bottleneck, stage_sizes=(1, 1, 1, 1), width=8, ibn=True)
  x = jax.random.normal(jax.random.key(1), (4, 32, 16, 3))
  variables = random_variables(model, x)

  loss, updates, flat = train_step(model, x, variables)
  assert np.isfinite(loss)
  assert all(np.all(np.isfinite(g)) for g in flat.values())
  assert np.any(np.asarray(flat[("layer1_0", "bn1", "IN", "scale")]) != 0)
  assert np.any(np.asarray(flat[("conv1", "kernel")]) != 0)
  old = variables["batch_stats"]["layer3_0"]["bn2"]["mean"]
  new = updates["batch_stats"]["layer3_0"]["bn2"]["mean"]
  assert not np.allclose(old, new)

  evaluate = jax.jit(lambda v: model.apply(v, x, train=False)[0])
  trained = {"params": variables["params"], "batch_stats": updates["batch_stats"]}
  first = evaluate(trained)
  np.testing.assert_array_equal(first, evaluate(trained))
  assert first.shape == (4, 2, 1, 256)


def _numpy_conv(x, w, stride, padding, dilation, groups):
  """Direct loops over outputs; x NHWC, w HWIO with I = C / groups."""
  b, h, wd, c = x.shape
  kh, kw, cin_g, cout = w.shape
  xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  oh = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
  ow = (wd + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
  out = np.zeros((b, oh, ow, cout))
  cout_g = cout // groups
  for o in range(cout):
    g = o // cout_g
    for i in range(oh):
      for j in range(ow):
        for u in range(kh):
          for v in range(kw):
            patch = xp[:, i * stride + u * dilation, j * stride + v * dilation,
                       g * cin_g:(g + 1) * cin_g]
            out[:, i, j, o] += patch @ w[u, v, :, o]
  return out


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 1, 1, 1), (2, 3, 1, 1), (1, 2, 2, 2)])
def test_conv_matches_torch_semantics(stride, padding, dilation, groups):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 9, 7, 4)).astype(np.float32)
  w = rng.normal(size=(3, 3, 4 // groups, 6)).astype(np.float32)
  conv = layers.Conv(6, 3, stride=stride, padding=padding, dilation=dilation, groups=groups)
  shapes = jax.eval_shape(lambda: conv.init(jax.random.key(0), x))["params"]
  assert jax.tree.map(lambda s: s.shape, shapes) == {"kernel": w.shape}
  y = conv.apply({"params": {"kernel": w}}, x)
  ref = _numpy_conv(x.astype(np.float64), w.astype(np.float64), stride, padding, dilation, groups)
  np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_conv_init_is_kaiming_fan_out():
  conv = layers.Conv(256, 3)
  kernel = conv.init(jax.random.key(0), jnp.zeros((1, 8, 8, 64)))["params"]["kernel"]
  std = np.sqrt(2.0 / (3 * 3 * 256))
  assert abs(np.std(kernel) / std - 1) < 0.02
  assert np.max(np.abs(kernel)) > 3 * std  # a plain normal, not truncated at 2 std
  with_bias = jax.eval_shape(lambda: layers.Conv(4, 1, use_bias=True).init(
      jax.random.key(0), jnp.zeros((1, 2, 2, 3))))["params"]
  assert jax.tree.map(lambda s: s.shape, with_bias) == {"kernel": (1, 1, 3, 4), "bias": (4,)}


@pytest.mark.parametrize("channels", [6, 5])
def test_ibn_matches_numpy(channels):
  rng = np.random.default_rng(0)
  x = (rng.normal(size=(3, 5, 4, channels)) * 2 + 1).astype(np.float32)
  ibn = layers.IBN()
  variables = ibn.init(jax.random.key(0), x, use_running_average=False)
  y, updates = ibn.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
  half = channels // 2
  assert variables["params"]["IN"]["scale"].shape == (half,)
  assert variables["params"]["BN"]["scale"].shape == (channels - half,)
  x64 = x.astype(np.float64)
  ref = np.empty_like(x64)
  for n in range(x.shape[0]):  # instance norm: per sample, per channel, over H, W
    for c in range(half):
      v = x64[n, :, :, c]
      ref[n, :, :, c] = (v - v.mean()) / np.sqrt(v.var() + 1e-5)
  for c in range(half, channels):  # batch norm: per channel over N, H, W
    v = x64[..., c]
    ref[..., c] = (v - v.mean()) / np.sqrt(v.var() + 1e-5)
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
  # Running stats: torch momentum 0.1 from (0, 1).
  mean = x64[..., half:].reshape(-1, channels - half).mean(0)
  np.testing.assert_allclose(updates["batch_stats"]["BN"]["mean"], 0.1 * mean, rtol=1e-5)
  # At test time the IN half still normalises each image by its own statistics.
  y_eval = ibn.apply({**variables, **updates}, x, use_running_average=True)
  np.testing.assert_allclose(y_eval[..., :half], ref[..., :half], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("h,w", [(8, 6), (7, 5), (2, 3)])
@pytest.mark.parametrize("ceil_mode", [True, False])
def test_stem_max_pool(h, w, ceil_mode):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, h, w, 3)).astype(np.float32)

  def starts(n):
    # FastReID: no padding, ceil mode keeps a last partial window if it starts
    # inside the input; torchvision: padding 1 on both sides, floor.
    return list(range(0, n - 1, 2)) if ceil_mode else list(range(-1, n - 1, 2))

  def window(s, n):
    return slice(max(s, 0), min(s + 3, n))

  ref = np.array([[[x[b, window(i, h), window(j, w)].max(axis=(0, 1)) for j in starts(w)]
                   for i in starts(h)] for b in range(2)])
  np.testing.assert_array_equal(stem_max_pool(jnp.asarray(x), ceil_mode), ref)
