"""The supervised method's recipes around the model: mixed precision and the timed freeze."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jreid import config_blocks
from jreid.core import run_once
from jreid.methods import supervised
from jreid.models.reid import model_config
from jreid.train import update

NUM_CLASSES = 4


def _config(backbone="resnet18", **train):
  model = model_config("reid", backbone)
  if backbone == "resnet18":
    model.backbone.update(width=8)
  else:  # a tiny ViT with the ICS stem (IBN: batch statistics too); 4x2 tokens of 8x8 pixels
    model.backbone.update(embed_dim=32, depth=2, num_heads=2, patch_size=8, stride=8,
                          stem_channels=8, drop_path=0.1)
  config = ml_collections.ConfigDict(dict(
      method="supervised", model=model, loss=config_blocks.loss(), train=config_blocks.train(**train),
      optim=config_blocks.optim(freeze="backbone/.*", freeze_steps=2)))
  return config


def _method(config):
  return supervised.build(config, NUM_CLASSES, update.factory(config, 10))


def _batch():
  rng = np.random.default_rng(0)
  return {"image": rng.normal(size=(8, 32, 16, 3)).astype(np.float32),
          "label": np.repeat(np.arange(NUM_CLASSES), 2).astype(np.int32)}


def _leaf(tree, *keys):
  for key in keys:
    tree = tree[key]
  return np.asarray(tree)


def test_freeze_holds_backbone_params_and_statistics_then_releases():
  method = _method(_config())
  state = run_once.jit(method.init)(jax.random.key(0), jnp.zeros((1, 32, 16, 3)))
  step = jax.jit(method.train_step)
  kernel = ("backbone", "conv1", "kernel")
  before = state
  for _ in range(2):
    state, _ = step(state, _batch(), jax.random.key(1))
  np.testing.assert_array_equal(_leaf(state.params, *kernel), _leaf(before.params, *kernel))
  np.testing.assert_array_equal(_leaf(state.batch_stats, "backbone", "bn1", "mean"),
                                _leaf(before.batch_stats, "backbone", "bn1", "mean"))
  assert not np.array_equal(_leaf(state.params, "head", "classifier", "kernel"),
                            _leaf(before.params, "head", "classifier", "kernel"))
  assert not np.array_equal(_leaf(state.batch_stats, "head", "neck", "mean"),
                            _leaf(before.batch_stats, "head", "neck", "mean"))
  frozen_end = state
  state, _ = step(state, _batch(), jax.random.key(1))
  assert not np.array_equal(_leaf(state.params, *kernel), _leaf(frozen_end.params, *kernel))
  assert not np.array_equal(_leaf(state.batch_stats, "backbone", "bn1", "mean"),
                            _leaf(frozen_end.batch_stats, "backbone", "bn1", "mean"))


@pytest.mark.parametrize("backbone", ["resnet18", "vit_small_ics"])
def test_bfloat16_step_keeps_float32_state_and_tracks_float32_losses(backbone):
  fp32, bf16 = _method(_config(backbone)), _method(_config(backbone, compute_dtype="bfloat16"))
  state = run_once.jit(fp32.init)(jax.random.key(0), jnp.zeros((1, 32, 16, 3)))
  new32, m32 = jax.jit(fp32.train_step)(state, _batch(), jax.random.key(1))
  new16, m16 = jax.jit(bf16.train_step)(state, _batch(), jax.random.key(1))
  for tree in (new16.params, new16.batch_stats, new16.opt_state):
    for leaf in jax.tree.leaves(tree):
      if jnp.issubdtype(leaf.dtype, jnp.floating):
        assert leaf.dtype == jnp.float32
  # bfloat16 keeps 8 bits of mantissa: losses agree to about 1%, not bit for bit.
  for name in ("loss_ce", "loss_triplet"):
    np.testing.assert_allclose(m16[name], m32[name], rtol=3e-2)
    assert m16[name] != m32[name]  # the low-precision forward really ran
  f32 = jax.jit(fp32.features)(new32, _batch()["image"])
  f16 = jax.jit(bf16.features)(new32, _batch()["image"])
  assert f16.dtype == jnp.float32
  cos = np.sum(f32 * f16, -1) / np.linalg.norm(f32, axis=-1) / np.linalg.norm(f16, axis=-1)
  assert np.all(cos > 0.99)


def test_a_vit_gives_its_patch_tokens_as_spatial_features():
  method = _method(_config("vit_small_ics"))
  state = run_once.jit(method.init)(jax.random.key(0), jnp.zeros((1, 32, 16, 3)))
  images = _batch()["image"]
  spatial = method.spatial_features(state, images)
  assert spatial.shape == (8, 4 * 2, 32)  # 4x2 tokens of 8x8 pixels, 32 wide
  model = supervised.build_model(_config("vit_small_ics").model, NUM_CLASSES)
  _, out = model.apply({"params": state.params, "batch_stats": state.batch_stats}, images, train=False)
  np.testing.assert_allclose(spatial, np.asarray(out["patch_tokens"]).reshape(8, 8, 32), atol=1e-6)
