"""UP-ReID's step: its losses against a numpy computation, the grouped key BN, the EMA and
queues after a step, the ablation presets, one step on 1 vs 4 devices, and the pre-trained
backbone reaching BoT (init_from) and MGN (through the torchvision export)."""
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid import config_blocks
from jreid.convert import export
from jreid.core import checkpoint, partition, run_once
from jreid.core.state import TrainState
from jreid.errors import ConfigError
from jreid.methods import upreid
from jreid.models.reid import build_model, model_config
from jreid.train import loop, update
from tests.conftest import cpu_env

REPO = pathlib.Path(__file__).resolve().parents[2]
B, H, W = 8, 32, 16


def _method(preset="smoke", **overrides):
  config = config_blocks.load_config(f"configs/upreid.py:{preset}")
  config.train.batch_size = B
  config.upreid.update(**{"queue_size": 12, **overrides})
  return upreid.build(config, 0, update.factory(config, 10))


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  return {name: jnp.asarray(rng.normal(size=(B, H, W, 3)), jnp.float32)
          for name in ("original", "query", "key")}


_APPLY = {}  # one jitted encoder per method (jit caches by function identity)


def _project(method, params, stats, images):
  """The encoder in train-mode BN over exactly `images` (the reference's only use of the model)."""
  if id(method.impl.model) not in _APPLY:
    _APPLY[id(method.impl.model)] = jax.jit(lambda p, s, x: method.impl.model.apply(
        {"params": p, "batch_stats": s}, x, train=True, mutable=["batch_stats"])[0][0])
  apply = _APPLY[id(method.impl.model)]
  return np.asarray(apply(params, stats, jnp.asarray(images, jnp.float32)), np.float64)


def _nce(q, k, negatives, t):
  total = 0.0
  for i in range(len(q)):
    logits = np.concatenate([[q[i] @ k[i]], negatives @ q[i]]) / t
    total += np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - logits[0]
  return total / len(q)


def _mmd(x, y, mul, num):
  rows = np.concatenate([x, y])
  d = np.array([[np.sum((a - b) ** 2) for b in rows] for a in rows])
  n = len(rows)
  base = d.sum() / (n * n - n) / mul ** (num // 2)
  k = sum(np.exp(-d / (base * mul ** i)) for i in range(num))
  b = len(x)
  return k[:b, :b].mean() + k[b:, b:].mean() - 2 * k[:b, b:].mean()


def _patches(images):  # (B, H, W, C) -> 8 patches, row-major over a 4 x 2 grid, written out by hand
  h, w = H // 4, W // 2
  return [images[:, r * h:(r + 1) * h, c * w:(c + 1) * w] for r in range(4) for c in range(2)]


@pytest.mark.parametrize("hard_mining", [True, False])
def test_losses_match_a_numpy_computation(hard_mining):
  # One key BN group: the keys then need no permutation, so the reference embeds directly.
  method = _method(key_bn_groups=1, hard_mining=hard_mining)
  s = method.impl.settings
  state = run_once.jit(method.init)(jax.random.key(0), jnp.zeros((1, H, W, 3)))
  batch = _batch()
  ema_params = jax.tree.map(lambda p: p * 0.9, state.params)  # distinct from the online encoder
  targets = jax.jit(method.impl.targets)(state, ema_params, batch, jax.random.key(1))
  total, (_, parts) = jax.jit(method.impl.losses)(state.params, state, batch, targets)

  p, e, stats = state.params, ema_params, state.batch_stats
  q = _project(method, p, stats, batch["query"])
  k = _project(method, e, stats, batch["key"])
  o = _project(method, e, stats, batch["original"])
  queue, patch_queues = np.asarray(state.queue, np.float64), np.asarray(state.patch_queues, np.float64)
  image = _nce(q, k, queue, s.temperature)
  consistency = _mmd(q @ k.T, o @ o.T, s.mmd_kernel_mul, s.mmd_kernel_num)
  # All patches of a view go through the encoder as one batch (so one BN over all of them).
  embed = lambda m, images: _project(m[0], m[1], stats, np.concatenate(_patches(images))).reshape(8, B, -1)
  pq = embed((method, p), batch["query"])
  pk = embed((method, e), batch["key"])
  pm = embed((method, e), batch["query"])
  mirror = [1, 0, 3, 2, 5, 4, 7, 6]
  per_patch = []
  for i in range(8):
    same = _nce(pq[i], pk[i], patch_queues[i], s.temperature)
    per_patch.append(0.5 * (same + _nce(pq[i], pm[mirror[i]], patch_queues[i], s.temperature))
                     if hard_mining else same)
  patch = np.mean(per_patch)
  np.testing.assert_allclose(float(parts["loss_image"]), image, rtol=1e-5)
  np.testing.assert_allclose(float(parts["loss_consistency"]), consistency, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(float(parts["loss_patch"]), patch, rtol=1e-5)
  np.testing.assert_allclose(float(total), image + 0.1 * consistency + 0.1 * patch, rtol=1e-5)


def test_ablations_compute_only_their_parts():
  batch = _batch()
  expected = {"moco": {"loss_image"}, "cc": {"loss_image", "loss_consistency"},
              "icc": {"loss_image", "loss_patch"}}
  for name, parts in expected.items():
    method = _method(f"smoke_{name}")
    state = jax.eval_shape(method.init, jax.random.key(0), jnp.zeros((1, H, W, 3)))  # shapes only
    _, measurements = jax.eval_shape(method.train_step, state, batch, jax.random.key(1))
    assert {k for k in measurements if k.startswith("loss_")} == parts, name


def test_grouped_keys_normalise_each_shuffled_group_on_its_own():
  method = _method(key_bn_groups=2)
  state = run_once.jit(method.init)(jax.random.key(0), jnp.zeros((1, H, W, 3)))
  images = _batch()["key"]
  rng = jax.random.key(7)
  keys, stats = method.impl.keys(state.params, state.batch_stats, images, rng)
  order = np.asarray(jax.random.permutation(rng, B))  # the documented shuffle
  reference = np.zeros((B, keys.shape[1]))
  for group in (order[:B // 2], order[B // 2:]):
    reference[group] = _project(method, state.params, state.batch_stats, images[group])
  np.testing.assert_allclose(np.asarray(keys), reference, rtol=1e-4, atol=1e-5)
  # The keys differ from one BN over the whole batch: the grouping is real.
  whole = _project(method, state.params, state.batch_stats, images)
  assert np.abs(np.asarray(keys) - whole).max() > 1e-3


def test_a_step_updates_ema_before_the_keys_and_enqueues_them():
  method = _method(key_bn_groups=1)
  s = method.impl.settings
  state = run_once.jit(method.init)(jax.random.key(0), jnp.zeros((1, H, W, 3)))
  state = state.replace(ema_params=jax.tree.map(lambda p: p * 0.5, state.params),
                        queue_pointer=jnp.asarray(8, jnp.int32))  # 12 rows: this write wraps
  batch = _batch()
  new, _ = jax.jit(method.train_step)(state, batch, jax.random.key(3))
  expected_ema = jax.tree.map(lambda e, p: s.momentum * e + (1 - s.momentum) * p,
                              state.ema_params, state.params)
  for got, want in zip(jax.tree.leaves(new.ema_params), jax.tree.leaves(expected_ema)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  keys = _project(method, expected_ema, state.batch_stats, batch["key"])
  rows = [8, 9, 10, 11, 0, 1, 2, 3]
  np.testing.assert_allclose(np.asarray(new.queue)[rows], keys, rtol=1e-4, atol=1e-5)
  untouched = [4, 5, 6, 7]
  np.testing.assert_array_equal(np.asarray(new.queue)[untouched], np.asarray(state.queue)[untouched])
  patch_keys = _project(method, expected_ema, state.batch_stats,
                        np.concatenate(_patches(batch["key"]))).reshape(8, B, -1)
  np.testing.assert_allclose(np.asarray(new.patch_queues)[:, rows], patch_keys, rtol=1e-4, atol=1e-5)
  assert int(new.queue_pointer) == 4 and int(new.step) == 1
  assert not np.allclose(jax.tree.leaves(new.params)[0], jax.tree.leaves(state.params)[0])


def test_config_errors_name_the_fields():
  with pytest.raises(ConfigError, match="key_bn_groups"):
    _method(key_bn_groups=3)
  with pytest.raises(ConfigError, match="queue_size"):
    _method(queue_size=4)
  with pytest.raises(ConfigError, match="hard_mining"):
    _method(intrinsic=False, hard_mining=True)
  with pytest.raises(ConfigError, match="patch_rows"):
    _method(patch_rows=5)


ONE_STEP_ON_TWO_MESHES = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jreid import config_blocks
from jreid.core import run_once
from jreid.methods import upreid
from jreid.train import update
config = config_blocks.load_config("configs/upreid.py:smoke")
method = upreid.build(config, 0, update.factory(config, 10))
state = jax.device_get(run_once.jit(method.init)(jax.random.key(0), jnp.zeros((1, 32, 16, 3))))
rng = np.random.default_rng(0)
batch = {k: rng.normal(size=(16, 32, 16, 3)).astype(np.float32) for k in ("original", "query", "key")}
out = {}
for devices in (1, 4):
  mesh = Mesh(np.asarray(jax.devices()[:devices]), ("data",))
  repl, shard = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  step = jax.jit(method.train_step, in_shardings=(repl, shard, repl), out_shardings=(repl, repl))
  new, measured = step(jax.device_put(state, repl), jax.device_put(batch, shard), jax.random.key(3))
  out[devices] = jax.device_get((new, measured))
(one, m1), (four, m4) = out[1], out[4]
worst = max(abs(float(m1[k]) - float(m4[k])) / max(1.0, abs(float(m1[k]))) for k in m1)
state_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(four)))
print(f"RESULT {worst} {state_diff} {int(one.queue_pointer)} {int(four.queue_pointer)}")
"""


@pytest.mark.slow
def test_one_step_on_one_and_four_devices_is_the_same_computation():
  """The sharded step (grouped key BN, queues, shuffles) does the same mathematics on any mesh.

  From one state and batch, 1 and 4 devices give the same measurements and the
  same new state (params, EMA, queues) up to float32 summation order.
  """
  env = cpu_env(4)
  result = subprocess.run([sys.executable, "-c", ONE_STEP_ON_TWO_MESHES], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  line = next(l for l in result.stdout.splitlines() if l.startswith("RESULT"))
  worst, state_diff, pointer_one, pointer_four = line.split()[1:]
  assert float(worst) <= 1e-5 and float(state_diff) <= 1e-4
  assert pointer_one == pointer_four == "16"


def _leaves_under(tree, prefix):
  return {name: np.asarray(leaf) for name, leaf in zip(partition.paths(tree), jax.tree.leaves(tree))
          if name.startswith(prefix)}


def test_the_pretrained_backbone_reaches_bot_directly_and_mgn_through_export(tmp_path):
  """Downstream: BoT's init_from reads the UP-ReID workdir; MGN reads its torchvision export."""
  method = _method()
  pretrained = run_once.jit(method.init)(jax.random.key(0), jnp.zeros((1, H, W, 3)))
  pretrained = pretrained.replace(params=jax.tree.map(lambda p: p + 0.5, pretrained.params))
  ckpt = checkpoint.Checkpointer(tmp_path / "upreid" / checkpoint.CHECKPOINT_SUBDIR)
  ckpt.save(1, pretrained, {})
  ckpt.wait()
  ckpt.close()
  source = _leaves_under(pretrained.params, "backbone/")

  def fresh_state(meta):
    model_cfg = model_config(meta, "resnet18")
    model_cfg.backbone.update(width=8)
    # MGN splits the last map into 3 stripes: initialise at a height that allows it.
    variables = build_model(model_cfg, 5).init(jax.random.key(1), jnp.zeros((1, 96, 32, 3)), train=False)
    return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                      batch_stats=variables["batch_stats"], opt_state=())

  (bot_params, _), _, _, _ = loop._init_weights(str(tmp_path / "upreid"), fresh_state("reid"))
  assert _leaves_under(bot_params, "backbone/").keys() == source.keys()
  for name, value in _leaves_under(bot_params, "backbone/").items():
    np.testing.assert_array_equal(value, source[name], err_msg=name)

  exported = tmp_path / "upreid_r18.safetensors"
  result = export.export_checkpoint(tmp_path / "upreid", exported, layout="torchvision")
  assert all(name.startswith("params/projector/") for name in result.skipped)
  (mgn_params, _), _, _, _ = loop._init_weights(str(exported), fresh_state("mgn"))
  for name, value in _leaves_under(mgn_params, "backbone/").items():  # the shared trunk
    np.testing.assert_array_equal(value, source[name], err_msg=name)
  for branch in ("b1", "b2", "b3"):  # each branch's copy of layer4
    copied = _leaves_under(mgn_params, f"{branch}/layer4_")
    assert copied
    for name, value in copied.items():
      np.testing.assert_array_equal(value, source["backbone/" + name[len(branch) + 1:]], err_msg=name)


@pytest.mark.slow
def test_init_from_starts_the_key_encoder_from_the_loaded_weights(smoke_run, synth_root, tmp_path):
  """Before the after-init_from hook the key encoder stayed at its random init (a MoCo run
  continuing from a trained trunk contrasted against keys of an untrained one)."""
  config = config_blocks.load_config("configs/upreid.py:smoke")
  config.data.root = str(synth_root)
  config.init_from = str(smoke_run)  # configs/baseline.py:smoke: the same ResNet-18 trunk
  run = loop.prepare(config)
  state, _, _ = loop._initial_state(config, None, run, log=lambda text: None)  # a fresh workdir
  loaded, _ = checkpoint.restore_variables(smoke_run)
  state = jax.device_get(state)
  np.testing.assert_array_equal(state.params["backbone"]["conv1"]["kernel"],
                                loaded["params"]["backbone"]["conv1"]["kernel"])
  for online, key in ((state.params, state.ema_params), (state.batch_stats, state.ema_batch_stats)):
    assert jax.tree.structure(online) == jax.tree.structure(key)
    for a, b in zip(jax.tree.leaves(online), jax.tree.leaves(key)):
      np.testing.assert_array_equal(a, b)
  fresh = jax.device_get(run.fresh_state())
  assert not np.array_equal(fresh.ema_params["backbone"]["conv1"]["kernel"],
                            state.ema_params["backbone"]["conv1"]["kernel"])
