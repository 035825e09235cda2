"""A cluster-contrast run killed by SIGKILL mid-epoch resumes to a bit-identical end.

Its pseudo-labels come from the clustering at the epoch's start: the resumed
run must not cluster again (its state has moved since), but read the labels
the checkpoint saved, and draw the same batches from the same position.
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

from jreid import config_blocks
from jreid.core import checkpoint
from jreid.train import loop

import killed_runs  # tests/train/killed_runs.py

REPO = pathlib.Path(__file__).resolve().parents[2]

DRIVER = killed_runs.DRIVER.format(setup="")


_final = killed_runs.final_run


@pytest.mark.slow
def test_sigkill_mid_epoch_of_cluster_contrast_resumes_bit_identical(synth_root, tmp_path, capsys):
  config = config_blocks.load_config("configs/cluster_contrast.py:smoke")
  config.data.root = str(synth_root)
  config.train.update(epochs=3.0, epoch_steps=2)  # steps 1-2, 3-4, 5-6
  config_path = tmp_path / "config.json"
  config_path.write_text(config.to_json())
  fresh = lambda: ml_collections.ConfigDict(json.loads(config_path.read_text()))

  whole = loop.train_and_evaluate(fresh(), tmp_path / "whole")
  whole_log = capsys.readouterr().out
  assert whole_log.count("DBSCAN(") == 3

  kill_after = 3  # one step into the second epoch
  workdir = tmp_path / "killed"
  killed = subprocess.run([sys.executable, "-c", DRIVER, str(config_path), str(workdir),
                           str(kill_after)], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  assert killed.stdout.count("DBSCAN(") == 2

  resumed = loop.train_and_evaluate(fresh(), workdir)
  resumed_log = capsys.readouterr().out
  assert f"resumed from {workdir / 'checkpoints' / str(kill_after)}" in resumed_log
  assert resumed_log.count("DBSCAN(") == 1 and "epoch 3: DBSCAN" in resumed_log  # the third's only

  whole_step, whole_state, whole_losses = _final(tmp_path / "whole")
  resumed_step, resumed_state, resumed_losses = _final(workdir)
  assert whole_step == resumed_step == 6
  assert whole_losses == resumed_losses
  flat_whole = jax.tree_util.tree_flatten_with_path(whole_state)[0]
  flat_resumed = dict(jax.tree_util.tree_flatten_with_path(resumed_state)[0])
  assert {name for name, _ in flat_whole} == set(flat_resumed)
  for name, leaf in flat_whole:
    np.testing.assert_array_equal(leaf, flat_resumed[name], err_msg=str(name))
  assert whole == resumed
