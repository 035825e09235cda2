"""DASA's SA module: depth-wise conv against a numpy loop and XLA's grouped conv, identity init, positions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict, unflatten_dict

from jreid.core import run_once
from jreid.errors import ConfigError
from jreid.models.reid import build_model, model_config
from jreid.models.sa import SemanticsAdaption, depthwise_conv, dirac_init


def numpy_depthwise(x, kernel):
  """Direct definition: out[n, i, j, c] = sum_ab x[n, i + a - p, j + b - p, c] * k[a, b, c], zero outside."""
  n, h, w, c = x.shape
  k = kernel.shape[0]
  p = k // 2
  out = np.zeros_like(x, dtype=np.float64)
  for i in range(h):
    for j in range(w):
      for a in range(k):
        for b in range(k):
          y, z = i + a - p, j + b - p
          if 0 <= y < h and 0 <= z < w:
            out[:, i, j, :] += x[:, y, z, :] * kernel[a, b, :]
  return out


@pytest.mark.parametrize("k", [1, 3, 5])
def test_depthwise_conv_matches_the_definition(k):
  rng = np.random.default_rng(k)
  x = rng.normal(size=(2, 6, 5, 3)).astype(np.float32)
  kernel = rng.normal(size=(k, k, 3)).astype(np.float32)
  got = np.asarray(depthwise_conv(jnp.asarray(x), jnp.asarray(kernel)))
  np.testing.assert_allclose(got, numpy_depthwise(x, kernel), atol=1e-5)


def test_depthwise_gradients_match_xla_grouped_conv():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 8, 6, 4)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(5, 5, 4)), jnp.float32)
  target = jnp.asarray(rng.normal(size=(2, 8, 6, 4)), jnp.float32)

  def grouped(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel[:, :, None, :], (1, 1), ((2, 2), (2, 2)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=x.shape[-1])

  loss = lambda f: lambda x, k: jnp.sum((f(x, k) - target) ** 2)
  ours = jax.grad(loss(depthwise_conv), argnums=(0, 1))(x, kernel)
  xla = jax.grad(loss(grouped), argnums=(0, 1))(x, kernel)
  for a, b in zip(ours, xla):
    assert float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) < 1e-5


def test_fresh_module_is_the_identity():
  x = jax.random.normal(jax.random.key(0), (2, 7, 5, 6))
  module = SemanticsAdaption(5)
  variables = module.init(jax.random.key(1), x)
  assert variables["params"]["kernel"].shape == (5, 5, 6)
  np.testing.assert_array_equal(module.apply(variables, x), x)
  kernel = dirac_init(None, (3, 3, 2))
  assert float(kernel.sum()) == 2 and float(kernel[1, 1].sum()) == 2


def _sa_paths(backbone="resnet50", **options):
  config = model_config("reid", backbone)
  config.backbone.update(width=8, **options)
  shapes = jax.eval_shape(lambda: build_model(config, 5).init(
      jax.random.key(0), jnp.zeros((1, 64, 32, 3)), train=False))
  return [k for k in flatten_dict(shapes["params"], sep="/") if k.endswith("sa/kernel")]


def test_one_sa_after_every_conv_of_resnet50():
  paths = _sa_paths(sa_kernel=5)
  # stem 1 + 16 bottlenecks x 3 convs + 4 downsample convs (the paper's 53)
  assert len(paths) == 53
  assert "backbone/conv1/sa/kernel" in paths
  assert "backbone/layer4_0/downsample_conv/sa/kernel" in paths


def test_sa_stages_pick_positions():
  paths = _sa_paths(sa_kernel=3, sa_stages=(3, 4), backbone="resnet18")
  # ResNet-18 layer3 and layer4: 2 blocks x 2 convs + 1 downsample each
  assert len(paths) == 10
  assert all(p.startswith(("backbone/layer3", "backbone/layer4")) for p in paths)


def test_a_fresh_sa_model_computes_the_pretrained_function():
  x = jax.random.normal(jax.random.key(2), (2, 64, 32, 3))
  plain, adapted = model_config("reid", "resnet18"), model_config("reid", "resnet18")
  plain.backbone.update(width=8)
  adapted.backbone.update(width=8, sa_kernel=5)
  plain_model, sa_model = build_model(plain, 5), build_model(adapted, 5)
  init = lambda model, seed: run_once.jit(lambda x: model.init(jax.random.key(seed), x, train=False))(x)
  plain_vars, sa_vars = init(plain_model, 0), init(sa_model, 3)
  # Lay the plain model's weights over the SA model: only the SA kernels stay as initialised.
  flat = flatten_dict(sa_vars["params"], sep="/")
  flat.update(flatten_dict(plain_vars["params"], sep="/"))
  merged = {"params": unflatten_dict(flat, sep="/"), "batch_stats": plain_vars["batch_stats"]}
  np.testing.assert_allclose(sa_model.apply(merged, x, train=False)[0],
                             plain_model.apply(plain_vars, x, train=False)[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backbone,options,match", [
    ("resnet50", dict(sa_kernel=4), "odd"),
    ("resnet50", dict(sa_kernel=5, sa_stages=(3, 5)), "within 0..4"),
    # ResNeSt has no SA modules: the key is not one of its options.
    ("resnest50", dict(sa_kernel=5), r"model.backbone.sa_kernel is not an option of resnest50"),
])
def test_sa_settings_that_cannot_work_are_errors(backbone, options, match):
  config = model_config("reid", backbone)
  config.backbone.update(options)
  with pytest.raises(ConfigError, match=match):
    build_model(config, 5)
