"""DCAC's step against numpy (PCL, the hardest-sample memory update), its epoch-start memory, the
diffusion gradient reaching the encoder through the condition, and what its checkpoints hold.

The model is `configs/dcac.py:smoke`'s: a 2-block CLIP-style ViT at 32x16 and the tiny random
UNet / VAE (latents 4 x 8 x 8), built through the loop's `prepare` as a run builds it.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid import config_blocks
from jreid.core import partition
from jreid.data.records import Record
from jreid.train import loop


def _config(synth_root, **dcac):
  config = config_blocks.load_config("configs/dcac.py:smoke")
  config.data.root = str(synth_root)
  config.dcac.posterior_cache = str(synth_root / "cache" / "vae_posteriors")
  config.dcac.update(dcac)
  return config


@pytest.fixture(scope="module")
def prepared(synth_root):
  return loop.prepare(_config(synth_root))


@pytest.fixture(scope="module")
def losses(prepared):
  """The method's loss function, jitted once (eagerly, the UNet runs op by op: slow)."""
  return jax.jit(prepared.method.impl.losses)


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _batch(run, seed=0):
  rng = np.random.default_rng(seed)
  h, w = run.options.height, run.options.width
  posterior = rng.normal(size=(16, 2, 4, 8, 8)).astype(np.float32)
  posterior[:, 1] = -2 + 0.1 * posterior[:, 1]  # logvar
  return {"image": rng.normal(size=(16, h, w, 3)).astype(np.float32),
          "label": np.repeat(np.arange(4, dtype=np.int32) * 2, 4), "posterior": posterior}


def _with_memory(run, state, seed=1):
  memory = _unit(np.random.default_rng(seed).normal(size=state.memory.shape)).astype(np.float32)
  return state.replace(memory=jnp.asarray(memory))


def test_pcl_and_the_memory_update_equal_numpy(prepared, losses):
  run = prepared
  state = _with_memory(run, run.fresh_state())
  batch, rng = _batch(run), jax.random.key(3)
  memory = np.asarray(state.memory, np.float64)
  _, (_, parts) = losses(state.params, state.batch_stats, state.memory, batch, rng,
                              run.constants)
  neck = np.asarray(parts["neck"], np.float64)
  x, labels = _unit(neck), batch["label"]
  logits = x @ memory.T / 0.01
  log_probs = logits - logits.max(1, keepdims=True)
  log_probs -= np.log(np.exp(log_probs).sum(1, keepdims=True))
  np.testing.assert_allclose(parts["loss_pcl"], -log_probs[np.arange(16), labels].mean(), rtol=1e-4)
  # One jitted step: each identity's prototype moves 0.8 of the way to its least similar sample.
  stepped, measurements = run.train_step(state, batch, rng)
  expected = memory.copy()
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    hardest = members[np.argmin(x[members] @ memory[label])]
    expected[label] = _unit(0.2 * memory[label] + 0.8 * x[hardest])
  np.testing.assert_allclose(np.asarray(stepped.memory), expected, atol=2e-5)
  assert {"loss_ce", "loss_pcl", "loss_diffusion"} <= set(measurements)
  total = measurements["loss_ce"] + measurements["loss_pcl"] + measurements["loss_diffusion"]
  np.testing.assert_allclose(measurements["loss"], total, rtol=1e-5)


def test_the_diffusion_loss_trains_the_encoder_through_the_condition(prepared):
  run = prepared
  impl = run.method.impl
  state = _with_memory(run, run.fresh_state())
  batch, rng = _batch(run, seed=2), jax.random.key(4)

  def diffusion_only(params):
    return impl.losses(params, state.batch_stats, state.memory, batch, rng, run.constants)[1][1][
        "loss_diffusion"]

  grads = jax.jit(jax.grad(diffusion_only))(state.params)
  norm = lambda tree: float(jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(tree))))
  assert norm(grads["backbone"]) > 1e-6 and norm(grads["head"]) > 1e-6
  assert norm(grads["condition"]["prompts"]) > 1e-6
  # The encoder's only link to the diffusion loss is the condition c = softmax(logits / tau) @ P.


def test_epoch_start_rebuilds_the_memory_from_class_centroids(prepared):
  impl = prepared.method.impl
  rng = np.random.default_rng(5)
  features = rng.normal(size=(9, 16)).astype(np.float32)
  records = [Record(f"img{i}.jpg", pid=i % 3, camid=0) for i in range(9)]
  logs = []
  context = loop.EpochContext(records=records, epochs=None, seed=0, log=logs.append,
                              _extract=lambda state, recs: features)
  state = prepared.fresh_state()
  state = state.replace(memory=jnp.zeros((3, 16)))
  state, new_records = impl.on_epoch_start(state, 0, context)
  assert new_records is None
  unit = _unit(features.astype(np.float64))
  expected = np.stack([_unit(unit[[c, c + 3, c + 6]].mean(0)) for c in range(3)])
  np.testing.assert_allclose(np.asarray(state.memory), expected, atol=1e-6)
  assert "PCL memory rebuilt from the centroids of 9 images of 3 identities" in logs[0]


@pytest.mark.parametrize("variant, trained", [
    ("lora", {"backbone", "head", "condition", "lora"}),
    ("partial1", {"backbone", "head", "condition", "unet"}),
    ("none", {"backbone", "head"}),
])
def test_frozen_unet_weights_are_never_in_the_state(synth_root, variant, trained):
  run = loop.prepare(_config(synth_root, diffusion=variant))
  state = run.abstract_state
  assert set(state.params) == trained
  if variant == "partial1":
    paths = partition.paths(state.params["unet"])
    output = ("up_blocks_0", "up_blocks_1", "conv_norm_out", "conv_out", "time_embedding")
    assert paths and all(p.split("/")[0] in output for p in paths)
    frozen = partition.paths(run.constants)
    assert not set(frozen) & set(paths) and any(p.startswith("down_blocks_0/") for p in frozen)
  elif variant == "lora":
    assert partition.paths(run.constants) == partition.paths(run.method.impl.source.unet_params())
  else:
    assert run.constants is None
