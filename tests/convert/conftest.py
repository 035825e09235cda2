"""Tiny jreid ReID models and random variables for the conversion tests."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.models.backbones import BACKBONES
from jreid.models.heads import BNNeck
from jreid.models.pooling import AvgPool, GeM
from jreid.models.reid import ReID

IMAGE = (64, 32)
NUM_CLASSES = 5


def make_model(backbone="resnet50", *, width=8, ibn=False, ceil_mode_pool=True, neck_bias=False,
               gem=False):
  """A ReID model built directly, so the stem pooling (not in the model config) can be chosen."""
  return ReID(backbone=BACKBONES[backbone](width=width, last_stride=1, ibn=ibn,
                                          ceil_mode_pool=ceil_mode_pool),
              pooling=GeM(learnable_p=True) if gem else AvgPool(),
              head=BNNeck(num_classes=NUM_CLASSES, neck_bias=neck_bias))


def random_variables(model, seed=0):
  """Every leaf random and non-trivial (BN running stats included), shaped by an abstract init.

  Kernels are kaiming-scaled and the later norms of each block scale by 0.2-0.6
  (a milder zero-init-residual): with running statistics that do not match the
  activations, unit scales let the residual sums grow to ~1e3 by layer4, and
  an absolute tolerance would then test float32 rounding, not the mapping.
  """
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *IMAGE, 3)),
                                             train=False))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name, shape = path[-1].key, leaf.shape
    if name == "kernel" and len(shape) == 4:
      value = rng.normal(size=shape) * np.sqrt(2 / (np.prod(shape[:2]) * shape[-1]))
    elif name == "kernel":
      value = rng.normal(size=shape) * 0.01
    elif name == "scale" and path[-2].key in ("bn2", "bn3"):
      value = rng.uniform(0.2, 0.6, shape)
    elif name in ("scale", "var"):
      value = rng.uniform(0.5, 1.5, shape)
    elif name == "p":
      value = np.full(shape, 3.0)
    else:  # bias, mean
      value = rng.normal(size=shape) * 0.1
    return value.astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture
def jreid_model():
  return make_model


@pytest.fixture
def jreid_variables():
  return random_variables
