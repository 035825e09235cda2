"""The command line end to end: `configs/distill.py:smoke` from a smoke teacher run."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow
REPO = pathlib.Path(__file__).resolve().parents[2]


def run(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-m", "jreid.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
  return result


def test_distill_smoke_from_a_smoke_teacher(tmp_path, smoke_run, synth_root):
  """The teacher is the session's `configs/baseline.py:smoke` run (conftest), on the same data."""
  data, teacher, student = synth_root, smoke_run, tmp_path / "student"
  args = ("--config=configs/distill.py:smoke", f"--workdir={student}",
          f"--config.data.root={data}", f"--config.teacher.checkpoint={teacher}")
  result = run(*args)
  assert result.returncode == 0, result.stderr[-3000:]
  entries = [json.loads(line) for line in (student / "metrics.jsonl").read_text().splitlines()]
  assert [e["step"] for e in entries] == [1, 2, 3, 4]
  for entry in entries:
    assert {"loss", "loss_ce", "loss_triplet", "loss_kd_logit", "loss_pkt"} <= set(entry)
    assert all(np.isfinite(entry[k]) for k in ("loss", "loss_kd_logit", "loss_pkt"))
  assert entries[0]["loss_kd_logit"] > 0 and entries[0]["loss_pkt"] > 0
  results = json.loads((student / "results.json").read_text())
  assert 0 <= results["synth_tiny"]["mAP"] <= 100

  # Resuming restores the teacher from the run's own checkpoint and reads no teacher files.
  # (A missing teacher on a fresh run is covered in test_distill.py; main prints ReIDErrors as one line.)
  result = run(*args[:-1], "--config.teacher.checkpoint=/no/such/teacher", "--config.train.steps=5")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resumed from" in result.stdout
  assert json.loads((student / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 5

