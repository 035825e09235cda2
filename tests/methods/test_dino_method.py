"""The DINO method: one step's teacher EMA and centre, the smoke run, and `init_from` of its teacher."""
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.common import load_config
from jreid import methods
from jreid.core import run_once
from jreid.core.checkpoint import open_existing
from jreid.losses import dino
from jreid.train import loop, update
from tests.bad_inputs.conftest import cli
from tests.conftest import cpu_env


REPO = pathlib.Path(__file__).resolve().parents[2]


def _method(config):
  return methods.build(config, 0, update.factory(config, config.train.steps))


def _batch(config, rng):
  d, s = config.data, config.dino
  return {"global": rng.normal(size=(4, 2, d.height, d.width, 3)).astype(np.float32),
          "local": rng.normal(size=(4, s.num_local, s.local_height, s.local_width, 3)).astype(np.float32)}


def test_one_step_moves_the_teacher_by_its_ema_and_the_centre_by_the_teachers_logits():
  config = load_config("configs/transreid_ssl.py:smoke")
  method = _method(config)
  impl = method.impl
  sample = jnp.zeros((1, config.data.height, config.data.width, 3))
  state = run_once.jit(method.init)(jax.random.key(0), sample)
  batch = _batch(config, np.random.default_rng(0))
  new, out = jax.jit(method.train_step)(state, batch, jax.random.key(1))
  m = float(dino.teacher_momentum(0, config.train.steps, base=0.996))
  assert out["teacher_momentum"] == pytest.approx(0.996)
  for old_t, student, got in zip(jax.tree.leaves(state.teacher_params), jax.tree.leaves(new.params),
                                 jax.tree.leaves(new.teacher_params)):
    np.testing.assert_allclose(got, m * np.asarray(old_t) + (1 - m) * np.asarray(student), atol=1e-6)
  # The centre: 0.9 * 0 + 0.1 * the mean of the teacher's (uncentred) logits on the global crops.
  views = np.swapaxes(batch["global"], 0, 1).reshape(-1, *batch["global"].shape[2:])
  teacher, _ = impl.logits(state.teacher_params, state.teacher_batch_stats, views)
  np.testing.assert_allclose(new.center, 0.1 * np.asarray(teacher).mean(0), atol=1e-6)
  assert np.isfinite(out["loss"]) and int(new.step) == 1


def test_the_smoke_run_trains_and_a_fine_tune_starts_from_its_teacher(tmp_path, synth_root):
  workdir = tmp_path / "dino"
  done = cli("jreid.main", ["--config=configs/transreid_ssl.py:smoke", f"--workdir={workdir}",
                            f"--config.data.root={synth_root}"])
  assert done.code == 0, done.err[-2000:]
  results = json.loads((workdir / "results.json").read_text())
  assert 0 <= results["synth_tiny_multi/d0"]["mAP"] <= 100
  # init_from of the DINO run gives the ViT fine-tune the teacher's backbone, exactly.
  config = load_config("configs/vit.py:smoke")
  config.data.root = str(synth_root)
  run = loop.prepare(config)
  (params, _), loaded, _, _ = loop._init_weights(str(workdir), run.fresh_state())
  checkpointer, step = open_existing(workdir)
  try:
    raw = checkpointer.restore_raw(step)
  finally:
    checkpointer.close()
  teacher = raw["teacher_params"]["backbone"]
  assert jax.tree.structure(params["backbone"]) == jax.tree.structure(teacher)
  for got, want in zip(jax.tree.leaves(params["backbone"]), jax.tree.leaves(teacher)):
    np.testing.assert_array_equal(got, want)
  assert not np.array_equal(jax.tree.leaves(raw["params"]["backbone"])[0],
                            jax.tree.leaves(teacher)[0])  # the student differs: the teacher was taken
  assert all(name.startswith(("params/backbone", "batch_stats/backbone")) for name in loaded)


ONE_STEP_ON_TWO_MESHES = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jreid import config_blocks, methods
from jreid.core import run_once
from jreid.train import update
config = config_blocks.load_config("configs/transreid_ssl.py:smoke")
method = methods.build(config, 0, update.factory(config, config.train.steps))
state = jax.device_get(run_once.jit(method.init)(jax.random.key(0), jnp.zeros((1, 32, 16, 3))))
rng = np.random.default_rng(0)
batch = {"global": rng.normal(size=(16, 2, 32, 16, 3)).astype(np.float32),
         "local": rng.normal(size=(16, 2, 16, 8, 3)).astype(np.float32)}
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
centre = float(np.max(np.abs(one.center - four.center)))
stats = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(one.batch_stats),
                                                         jax.tree.leaves(four.batch_stats)))
print(f"RESULT {worst} {state_diff} {centre} {stats} {float(np.abs(one.center).max())}")
"""


@pytest.mark.slow
def test_one_step_on_one_and_four_devices_is_the_same_computation():
  """The centre and the stem's BN statistics are over the global batch on any mesh, so 1 and 4
  devices give the same measurements and new state (up to float32 summation order)."""
  env = cpu_env(4)
  result = subprocess.run([sys.executable, "-c", ONE_STEP_ON_TWO_MESHES], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  line = next(l for l in result.stdout.splitlines() if l.startswith("RESULT"))
  worst, state_diff, centre, stats, centre_size = map(float, line.split()[1:])
  assert worst <= 1e-5 and state_diff <= 1e-4 and centre <= 1e-6 and stats <= 1e-5
  assert centre_size > 0  # the centre moved: the comparison is not of zeros
