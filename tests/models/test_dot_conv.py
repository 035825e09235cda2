"""The dot-product convs (`conv_impl="dot"`, `"dot_1x1"`) against XLA's conv and a float64 numpy reference."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.core import run_once
from jreid.errors import ConfigError
from jreid.models import dot_conv
from jreid.models.layers import conv2d, resolve_conv_impl
from jreid.models.reid import build_model, model_config

# (kernel, stride, padding, dilation, groups, in channels, out channels): every conv ResNet-18/50
# use (7x7/2 stem on RGB, 3x3/1 and /2, 1x1/1 and the 1x1/2 downsample), unpadded and dilated
# forms, ResNeXt/ResNeSt groups and a depth-wise 5x5 (DASA's SA module).
CONV_SHAPES = {
    "stem_7x7_s2": (7, 2, 3, 1, 1, 3, 16),
    "3x3_s1": (3, 1, 1, 1, 1, 8, 16),
    "3x3_s2": (3, 2, 1, 1, 1, 8, 16),
    "3x3_s1_unpadded": (3, 1, 0, 1, 1, 8, 8),
    "3x3_s2_unpadded": (3, 2, 0, 1, 1, 8, 8),
    "3x3_dilated": (3, 1, 2, 2, 1, 8, 8),
    "1x1_s1": (1, 1, 0, 1, 1, 16, 8),
    "1x1_s2_downsample": (1, 2, 0, 1, 1, 8, 16),
    "3x3_grouped": (3, 2, 1, 1, 4, 8, 16),
    "1x1_grouped": (1, 1, 0, 1, 2, 8, 16),
    "5x5_depthwise": (5, 1, 2, 1, 8, 8, 8),
}


def _inputs(shape_name, dtype=np.float32, size=(13, 10)):
  k, _, _, _, groups, cin, cout = CONV_SHAPES[shape_name]
  rng = np.random.default_rng(sum(map(ord, shape_name)))
  x = rng.normal(size=(2, *size, cin)).astype(dtype)
  kernel = rng.normal(size=(k, k, cin // groups, cout)).astype(dtype)
  return x, kernel


def _conv_args(shape_name):
  _, s, p, d, groups, _, _ = CONV_SHAPES[shape_name]
  return dict(stride=s, padding=p, dilation=d, groups=groups)


def _loss_and_grads(impl, x, kernel, args):
  # sin() makes the output gradient vary per element, so every tap is exercised.
  loss = lambda x_, k_: jnp.sum(jnp.sin(conv2d(x_, k_, impl=impl, **args)))
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, kernel)


def _relative(a, b):
  return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("impl", ["dot", "dot_1x1"])
@pytest.mark.parametrize("shape_name", sorted(CONV_SHAPES))
def test_values_and_gradients_match_xla(shape_name, impl):
  x, kernel = _inputs(shape_name)
  args = _conv_args(shape_name)
  value_dot, (dx_dot, dk_dot) = _loss_and_grads(impl, x, kernel, args)
  value_xla, (dx_xla, dk_xla) = _loss_and_grads("xla", x, kernel, args)
  np.testing.assert_allclose(value_dot, value_xla, rtol=1e-5)
  assert _relative(dx_dot, np.asarray(dx_xla, np.float64)) < 1e-5
  assert _relative(dk_dot, np.asarray(dk_xla, np.float64)) < 1e-5
  assert dk_dot.dtype == kernel.dtype and dx_dot.dtype == x.dtype


def _numpy_kernel_gradient(x, g, kernel_shape, stride, padding, dilation, groups):
  """dL/dW[i, j, c, o] = sum over n, y, x of xpad[n, y*s + i*d, x*s + j*d, c of o's group] * g[n, y, x, o]."""
  kh, kw, cin_g, cout = kernel_shape
  cout_g = cout // groups
  xp = np.pad(x.astype(np.float64), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  grad = np.zeros(kernel_shape)
  for i in range(kh):
    for j in range(kw):
      window = xp[:, i * dilation::stride, j * dilation::stride][:, :g.shape[1], :g.shape[2]]
      for o in range(cout):
        group = o // cout_g
        channels = window[..., group * cin_g:(group + 1) * cin_g]
        grad[i, j, :, o] = np.einsum("nyxc,nyx->c", channels, g[..., o])
  return grad


@pytest.mark.parametrize("shape_name", sorted(CONV_SHAPES))
def test_kernel_gradient_matches_a_loop_in_float64(shape_name):
  x, kernel = _inputs(shape_name)
  args = _conv_args(shape_name)
  out = dot_conv.xla_conv(jnp.asarray(x), jnp.asarray(kernel), (args["stride"],) * 2,
                          (args["padding"],) * 2, (args["dilation"],) * 2, args["groups"])
  g = np.random.default_rng(1).normal(size=out.shape).astype(np.float32)
  pair = lambda v: (v, v)
  got = dot_conv.kernel_gradient(jnp.asarray(x), jnp.asarray(g), kernel.shape,
                                 pair(args["stride"]), pair(args["padding"]),
                                 pair(args["dilation"]), args["groups"])
  want = _numpy_kernel_gradient(x, g.astype(np.float64), kernel.shape, **args)
  assert _relative(got, want) < 1e-5


@pytest.mark.parametrize("shape_name", ["3x3_s2", "1x1_s2_downsample"])
def test_bfloat16_gradients_keep_their_dtypes_and_stay_close(shape_name):
  x, kernel = _inputs(shape_name)
  args = _conv_args(shape_name)
  as_bf16 = lambda a: jnp.asarray(a, jnp.bfloat16)
  _, (dx, dk) = _loss_and_grads("dot", as_bf16(x), as_bf16(kernel), args)
  _, (dx32, dk32) = _loss_and_grads("xla", x, kernel, args)
  assert dx.dtype == jnp.bfloat16 and dk.dtype == jnp.bfloat16
  assert _relative(dk, np.asarray(dk32, np.float64)) < 3e-2  # bf16 inputs: ~3 significant digits


@pytest.mark.parametrize("impl", ["dot", "dot_1x1"])
def test_a_resnet_trains_the_same_with_either_implementation(impl):
  """A tiny ResNet-50's train-mode loss and gradients: the switch changes no number.

  Compared in float64, where both must agree to rounding (1e-9): in float32
  the batch-statistic BNs of a deep net amplify summation-order rounding to
  ~1e-3 in some gradients, which would hide a real difference.
  """
  with jax.enable_x64(True):
    config = model_config("reid", "resnet50")
    config.backbone.update(width=8)
    images = jax.random.normal(jax.random.key(0), (4, 32, 16, 3), jnp.float64)
    models = {}
    for name in ("xla", impl):
      config.backbone.conv_impl = name
      models[name] = build_model(config, num_classes=5)
    variables = run_once.jit(lambda x: models["xla"].init(jax.random.key(1), x, train=False))(images)
    variables = jax.tree.map(lambda a: a.astype(jnp.float64), variables)

    def loss(params, model):
      (feature, _), _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                    images, train=True, mutable=["batch_stats"])
      return jnp.sum(feature ** 2)

    results = {name: jax.jit(jax.value_and_grad(loss), static_argnums=1)(variables["params"], m)
               for name, m in models.items()}
  np.testing.assert_allclose(results[impl][0], results["xla"][0], rtol=1e-12)
  grads_dot = flax.traverse_util.flatten_dict(results[impl][1], sep="/")
  grads_xla = flax.traverse_util.flatten_dict(results["xla"][1], sep="/")
  assert grads_dot.keys() == grads_xla.keys()
  assert any("kernel" in name for name in grads_xla)
  for name, want in grads_xla.items():
    assert grads_dot[name].dtype == jnp.float64
    if not np.any(want):  # the classifier: the loss above does not use the logits
      np.testing.assert_array_equal(grads_dot[name], 0.0)
    else:
      assert _relative(grads_dot[name], np.asarray(want)) < 1e-9, name


def test_auto_resolves_by_backend_and_unknown_names_fail():
  assert resolve_conv_impl("auto", backend="cpu") == "dot_1x1"
  assert resolve_conv_impl("auto", backend="gpu") == "xla"
  assert resolve_conv_impl("auto", backend="tpu") == "xla"
  assert resolve_conv_impl("xla", backend="cpu") == "xla"
  with pytest.raises(ConfigError, match="conv_impl='cudnn'"):
    resolve_conv_impl("cudnn")
  with pytest.raises(ConfigError, match="expected one of"):
    conv2d(jnp.zeros((1, 4, 4, 2)), jnp.zeros((1, 1, 2, 2)), impl="auto")
