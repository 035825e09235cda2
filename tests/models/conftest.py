import jax
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


@pytest.fixture
def random_variables():
  return fill_variables
