import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest


def fill_variables(model, x, seed=0):
  """Variables shaped by `model.init` (traced abstractly, so cheap) and filled from numpy.

  Initialising a whole ResNet through jax.random costs seconds of XLA CPU
  compilation; the tests only need plausible values (kaiming-scaled kernels,
  unit scales and variances, GeM p = 3), and `test_conv_init_is_kaiming_fan_out`
  checks the real initialiser.
  """
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      fan_out = np.prod(leaf.shape[:-2]) * leaf.shape[-1]
      return (rng.normal(size=leaf.shape) * np.sqrt(2 / fan_out)).astype(np.float32)
    if name == "p":
      return np.full(leaf.shape, 3.0, np.float32)
    return (np.ones if name in ("scale", "var") else np.zeros)(leaf.shape, np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def train_step_grads(model, x, variables, **apply_kwargs):
  """Loss = mean(feature map^2) in train mode: (loss, mutated collections, flat grads by path).

  The one jitted forward/backward the backbone tests share; extra keyword
  arguments (e.g. `capture_intermediates`) go to `model.apply`, and
  "intermediates" joins the mutable collections when they are captured.
  """
  mutable = ["batch_stats"] + (["intermediates"] if "capture_intermediates" in apply_kwargs else [])

  @jax.jit
  def loss_and_grad(params, batch_stats):
    def loss_fn(p):
      (fmap, _), updates = model.apply({"params": p, "batch_stats": batch_stats}, x, train=True,
                                       mutable=mutable, **apply_kwargs)
      return jnp.mean(fmap ** 2), updates
    return jax.value_and_grad(loss_fn, has_aux=True)(params)

  (loss, updates), grads = loss_and_grad(variables["params"], variables["batch_stats"])
  return loss, updates, flax.traverse_util.flatten_dict(grads)


@pytest.fixture
def random_variables():
  return fill_variables


@pytest.fixture
def train_step():
  return train_step_grads
