"""Epochs, epoch hooks with pseudo-labels, frozen constants and the method contract.

The end-to-end tests train `relabel_method` (pseudo-labels every epoch, a
large frozen constant): killed by SIGKILL right after a mid-epoch checkpoint
and resumed, a run ends bit-identical to one that was never interrupted, and
its checkpoints hold no constant.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from jreid import config_blocks, methods
from jreid.core import checkpoint
from jreid.errors import ConfigError
from jreid.methods import base
from jreid.train import durations, loop

import killed_runs  # tests/train/killed_runs.py

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
BASIS_SHAPE = (32 * 16 * 3, 512)  # 3 MB of float32: far more than the trained state


# ---- durations ---------------------------------------------------------------------------------

@pytest.mark.parametrize("images,batch", [(48, 8), (50, 8), (7, 3), (1000, 64)])
def test_epoch_boundaries_match_a_brute_force_count(images, batch):
  epochs = durations.Epochs(images=images, batch_size=batch, total_steps=4 * images // batch + 3)

  def begins(k):  # steps done when k passes over the images have been drawn: counted, not computed
    n = 0
    while n * batch < k * images:
      n += 1
    return n

  for done in range(epochs.total_steps):
    expected = max(k for k in range(done + 2) if begins(k) <= done)
    assert epochs.of_step(done) == expected, done
  assert epochs.of_step(epochs.total_steps) == epochs.count
  assert epochs.span(epochs.count - 1)[1] == epochs.total_steps


def _config(**changes):
  config = config_blocks.load_config("configs/baseline.py:smoke")
  config.train.update(steps=0, batch_size=8)
  for key, value in changes.items():
    section, name = key.split(".")
    config[section][name] = value
  return config


def test_epochs_resolve_to_steps_from_the_image_count():
  config = _config(**{"train.epochs": 2.5, "optim.warmup_steps": 0, "optim.warmup_epochs": 0.5,
                      "optim.milestones": (), "optim.milestone_epochs": (1.0, 2.0)})
  resolved, epochs = durations.resolve(config, images=50)
  assert resolved.train.steps == 16  # ceil(2.5 * 50 / 8)
  assert resolved.optim.warmup_steps == 4  # ceil(0.5 * 50 / 8)
  assert tuple(resolved.optim.milestones) == (7, 13)
  assert epochs.total_steps == 16 and epochs.count == 3
  assert config.train.steps == 0  # the config itself is not written back


def test_a_duration_given_both_ways_is_an_error():
  config = _config(**{"train.steps": 10, "train.epochs": 2.0})
  with pytest.raises(ConfigError, match="train.steps=10 and train.epochs=2.0"):
    durations.resolve(config, images=50)
  with pytest.raises(ConfigError, match="no length"):
    durations.resolve(_config(), images=50)


# ---- the contract ------------------------------------------------------------------------------

def _noop(*args):
  return args


def test_a_misspelt_hook_is_an_error_naming_it():
  with pytest.raises(ConfigError, match="'on_epoch_strat' \\(did you mean 'on_epoch_start'\\?\\)"):
    base.method("toy", init=_noop, train_step=_noop, features=_noop, on_epoch_strat=_noop)
  with pytest.raises(ConfigError, match="lacks the required hook\\(s\\) \\['features'\\]"):
    base.method("toy", init=_noop, train_step=_noop)
  with pytest.raises(ConfigError, match="'bank' must be callable"):
    base.method("toy", init=_noop, train_step=_noop, features=_noop, bank="backbone/.*")
  made = base.method("toy", init=_noop, train_step=_noop, features=_noop)
  assert made.on_epoch_start is None and made.fresh_params == "" and not made.has_constants


# ---- epoch hooks, records in checkpoints, constants -------------------------------------------

DRIVER = killed_runs.DRIVER.format(setup="\n".join([
    f"sys.path.insert(0, {str(HERE)!r})", "from jreid import methods",
    'methods.METHODS["relabel"] = "relabel_method"']))


@pytest.fixture(scope="module")
def relabel_setup(synth_root, tmp_path_factory):
  folder = tmp_path_factory.mktemp("relabel")
  basis = np.random.default_rng(0).normal(size=BASIS_SHAPE).astype(np.float32) / 40.0
  np.save(folder / "basis.npy", basis)
  config = config_blocks.load_config("configs/baseline.py:smoke")
  config.method = "relabel"
  config.relabel = ml_collections.ConfigDict({"basis_file": str(folder / "basis.npy")})
  config.data.root = str(synth_root)
  config.data.num_instances = 2
  config.train.update(steps=0, epochs=3.0, batch_size=8, checkpoint_every=1, log_every=1)
  config.optim.update(warmup_steps=0, milestones=(), lr=1e-2)
  path = folder / "config.json"
  path.write_text(config.to_json())
  return config, path


def _train_in_process(config_path, workdir, monkeypatch, capsys):
  monkeypatch.syspath_prepend(str(HERE))
  monkeypatch.setitem(methods.METHODS, "relabel", "relabel_method")
  config = ml_collections.ConfigDict(json.loads(pathlib.Path(config_path).read_text()))
  results = loop.train_and_evaluate(config, workdir)
  return results, capsys.readouterr().out


_final = killed_runs.final_run


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical(relabel_setup, tmp_path, monkeypatch,
                                                        capsys):
  config, config_path = relabel_setup
  whole_results, whole_log = _train_in_process(config_path, tmp_path / "whole", monkeypatch, capsys)
  assert [f"epoch {k}/3" in whole_log for k in (1, 2, 3)] == [True, True, True]
  images = int(whole_log.split("train: ")[1].split(" images")[0])
  epochs = durations.Epochs(images=images, batch_size=8, total_steps=-(-3 * images // 8))
  kill_after = epochs.start(1) + 1  # one step into the second epoch
  assert epochs.of_step(kill_after) == 1 and epochs.start(2) > kill_after

  workdir = tmp_path / "killed"
  killed = subprocess.run([sys.executable, "-c", DRIVER, str(config_path),
                           str(workdir), str(kill_after)], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  assert checkpoint.Checkpointer(workdir / "checkpoints", read_only=True).latest_step() == kill_after

  resumed_results, resumed_log = _train_in_process(config_path, workdir, monkeypatch, capsys)
  assert f"resumed from {workdir / 'checkpoints' / str(kill_after)}" in resumed_log
  # The interrupted epoch's hook is not run again; the next one's is.
  assert "epoch 2/3" not in resumed_log and "epoch 3/3" in resumed_log

  whole_step, whole_state, whole_losses = _final(tmp_path / "whole")
  resumed_step, resumed_state, resumed_losses = _final(workdir)
  assert whole_step == resumed_step == epochs.total_steps
  assert whole_losses == resumed_losses
  for name, leaf in jax.tree_util.tree_flatten_with_path(whole_state)[0]:
    np.testing.assert_array_equal(leaf, _leaf(resumed_state, name), err_msg=str(name))
  assert whole_results == resumed_results


def _leaf(tree, path):
  for key in path:
    tree = tree[getattr(key, "key", getattr(key, "name", getattr(key, "idx", None)))]
  return tree


@pytest.mark.slow
def test_checkpoints_hold_neither_constants_nor_their_optimiser_state(relabel_setup, tmp_path,
                                                                      monkeypatch, capsys):
  config, config_path = relabel_setup
  text = json.loads(config_path.read_text())
  text["train"]["epochs"] = 0.5
  short = tmp_path / "short.json"
  short.write_text(json.dumps(text))
  _train_in_process(short, tmp_path / "run", monkeypatch, capsys)
  step, raw, _ = _final(tmp_path / "run")
  shapes = [np.shape(leaf) for leaf in jax.tree.leaves(raw)]
  assert BASIS_SHAPE not in shapes
  folder = tmp_path / "run" / "checkpoints" / str(step)
  stored = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
  basis_bytes = np.prod(BASIS_SHAPE) * 4
  assert stored < basis_bytes / 10, (stored, basis_bytes)
  # ... while the records of the running epoch are there, pseudo-labels included.
  data_state = json.loads((folder / "data" / "metadata").read_text())
  pids = {row[1] for row in data_state["records"]}
  assert pids <= set(range(4)) and len(pids) == 4
