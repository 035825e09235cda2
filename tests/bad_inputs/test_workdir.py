"""Workdirs and output paths: a refused run leaves its workdir byte-identical, a failed write names
its path and keeps the previous file, and only sound states become checkpoints.

Each case runs the training loop in this process on a copy of the session's
finished `baseline.py:smoke` workdir (or a fresh one) and compares every file
before and after.
"""
import errno
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from jreid import config_blocks, protocols
from jreid.core import paths, reporting
from jreid.errors import (CheckpointMismatchError, DatasetLayoutError, EvaluationError,
                          NonFiniteLossError, OutputPathError, ReIDError)
from tests.bad_inputs.conftest import cli, error_line, snapshot

REPO = pathlib.Path(__file__).resolve().parents[2]


def smoke_config(workdir_config: pathlib.Path | None = None, **overrides):
  """The finished run's own config (its config.json), or the smoke preset, with `overrides`."""
  config = config_blocks.load_config("configs/baseline.py:smoke")
  if workdir_config is not None:
    saved = json.loads(workdir_config.read_text())
    config.data.root, config.eval = saved["data"]["root"], config_blocks.evaluation(**saved["eval"])
  for key, value in overrides.items():
    section, _, name = key.rpartition("__")
    node = config
    for part in section.split("__") if section else []:
      node = node[part]
    node[name] = value
  return config


# A finished workdir re-run with a change that cannot run: refused before any write.
REFUSED_RERUNS = {
    "another architecture": (dict(model__backbone__name="resnet34"), CheckpointMismatchError,
                             "different model"),
    "another width": (dict(model__backbone__width=16), CheckpointMismatchError, "different model"),
    "data root that does not exist": (dict(data__train="market1501", data__test="market1501",
                                           data__root="/nonexistent/jreid"), DatasetLayoutError,
                                      "/nonexistent/jreid"),
    "data root that is a file": (dict(data__root="__FILE__"), OutputPathError, "is a file"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_RERUNS))
def test_a_refused_rerun_leaves_the_workdir_byte_identical(case, finished_run, tmp_path):
  overrides, error, fragment = REFUSED_RERUNS[case]
  overrides = {k: (str(tmp_path / "a_file") if v == "__FILE__" else v) for k, v in overrides.items()}
  (tmp_path / "a_file").write_text("not a folder")
  before = snapshot(finished_run)
  with pytest.raises(error, match=fragment):
    protocols.run(smoke_config(finished_run / "config.json", **overrides), finished_run)
  assert snapshot(finished_run) == before


def test_the_command_line_refuses_another_architecture_in_one_line(finished_run):
  """The acceptance case as a user meets it: a subprocess, stderr free of tracebacks."""
  before = snapshot(finished_run)
  saved = json.loads((finished_run / "config.json").read_text())
  result = subprocess.run(
      [sys.executable, "-m", "jreid.main", "--config=configs/baseline.py:smoke",
       f"--workdir={finished_run}", f"--config.data.root={saved['data']['root']}",
       "--config.model.backbone.name=resnet34"],
      cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=300)
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("jreid: error:")]
  assert len(errors) == 1 and "different model" in errors[0], result.stderr[-3000:]
  assert snapshot(finished_run) == before


# A fresh workdir that cannot be one: refused before anything is created.
def _file(tmp_path):
  (tmp_path / "a_file").write_text("x")
  return tmp_path / "a_file"


FRESH_WORKDIRS = {
    "a file": (lambda tmp: _file(tmp), "is a file; expected a folder"),
    "under a file": (lambda tmp: _file(tmp) / "run", "is a file, not a folder"),
    "deep under a file": (lambda tmp: _file(tmp) / "a" / "b", "is a file, not a folder"),
}


@pytest.mark.parametrize("case", sorted(FRESH_WORKDIRS))
def test_an_impossible_workdir_is_refused_before_any_write(case, tmp_path):
  make, fragment = FRESH_WORKDIRS[case]
  workdir = make(tmp_path)
  before = snapshot(tmp_path)
  with pytest.raises(OutputPathError, match=fragment):
    protocols.run(smoke_config(), workdir)
  assert snapshot(tmp_path) == before


def test_a_read_only_workdir_is_refused_naming_the_file_system(tmp_path, monkeypatch):
  # Root ignores permission bits, so the read-only mount is simulated at the two calls it answers.
  monkeypatch.setattr(paths.os, "access", lambda path, mode: False)
  monkeypatch.setattr(paths.os, "statvfs", lambda path: type("S", (), {"f_flag": os.ST_RDONLY})())
  with pytest.raises(OutputPathError, match=r"run: cannot create it, .* is not writable \(the file "
                                            r"system is read-only\)"):
    protocols.run(smoke_config(), tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_missing_data_creates_no_workdir(tmp_path):
  config = smoke_config(data__train="market1501", data__test="market1501", data__root=str(tmp_path))
  with pytest.raises(DatasetLayoutError, match="Market-1501"):
    protocols.run(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def _enospc(*args, **kwargs):
  raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_writing_results_keeps_the_previous_results(finished_run, monkeypatch):
  """Re-running the finished run re-evaluates it; the disk fills as results.json is written."""
  before = (finished_run / "results.json").read_bytes()
  real_mkstemp, real_fsync, writing = reporting.tempfile.mkstemp, reporting.os.fsync, []

  def mkstemp(prefix, dir):
    writing[:] = [prefix]
    return real_mkstemp(prefix=prefix, dir=dir)

  monkeypatch.setattr(reporting.tempfile, "mkstemp", mkstemp)
  monkeypatch.setattr(reporting.os, "fsync", lambda fd: _enospc() if writing == [".results.json."]
                      else real_fsync(fd))
  with pytest.raises(OutputPathError, match=r"cannot write the file .*results.json: no space left "
                                            r"on the device; the previous version is intact"):
    protocols.run(smoke_config(finished_run / "config.json"), finished_run)
  assert (finished_run / "results.json").read_bytes() == before
  assert not [p for p in finished_run.iterdir() if p.name.startswith(".results.json")]


def test_a_full_disk_while_logging_names_the_log(tmp_path, synth_root, monkeypatch):
  real_open = pathlib.Path.open

  def open_full(self, mode="r", *args, **kwargs):
    if self.name == "metrics.jsonl" and "a" in mode:
      _enospc()
    return real_open(self, mode, *args, **kwargs)

  monkeypatch.setattr(pathlib.Path, "open", open_full)
  with pytest.raises(OutputPathError, match=r"the log .*metrics.jsonl: no space left on the device"):
    protocols.run(smoke_config(data__root=str(synth_root), train__steps=1), tmp_path / "run")


def test_a_log_line_cut_by_a_kill_is_dropped_on_resume(tmp_path):
  log = reporting.JsonLines(tmp_path / "metrics.jsonl")
  log.path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
  log.rewind(2)
  assert log.read() == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]


# Diverging runs stop with one line and keep only sound checkpoints.
def test_a_diverging_run_saves_no_unsound_checkpoint(tmp_path, synth_root):
  # Adam at lr 1e30: the state after step 1 is finite but overflows at step 2, so it is not saved.
  config = smoke_config(data__root=str(synth_root), train__steps=2, train__checkpoint_every=1,
                        optim__lr=1e30, optim__warmup_steps=0)
  with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 2 \(computed from the state "
                                               r"after step 1, so that state was not saved\); "
                                               "training stopped, no checkpoint was saved"):
    protocols.run(config, tmp_path / "run")
  assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()]
  assert not (tmp_path / "run" / "results.json").exists()


def test_a_single_diverged_step_fails_at_evaluation_and_saves_nothing(tmp_path, synth_root):
  # No next loss judges the final state: its evaluation does (feature norms overflow float32).
  config = smoke_config(data__root=str(synth_root), train__steps=1, optim__lr=1e30,
                        optim__warmup_steps=0)
  with pytest.raises(EvaluationError, match=r"test set 'synth_tiny': the norms of 23 of 23 query "
                                            r"features.* overflow float32.*so the final state \(step "
                                            r"1\) was not saved; training stopped, no checkpoint"):
    protocols.run(config, tmp_path / "run")
  assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()]
  assert not (tmp_path / "run" / "results.json").exists()


class FakeCheckpointer:
  directory = pathlib.Path("/run/checkpoints")

  def __init__(self):
    self.saved = []

  def save(self, step, state, data_state):
    self.saved.append(step)

  def latest_step(self):
    return self.saved[-1] if self.saved else None

  def wait(self):
    pass


def fake_state(**bad):
  """A host train state; `bad` puts a value into one leaf of one part."""
  import ml_dtypes
  import numpy as np
  from jreid.core.state import TrainState
  parts = {"params": {"conv": {"kernel": np.ones((2, 2), np.float32)},
                      "head": {"scale": np.ones(2, ml_dtypes.bfloat16)}},
           "batch_stats": {"bn": {"var": np.ones(3, np.float32)}},
           "opt_state": ({"mu": np.zeros(2, np.float32), "count": np.array(3, np.int32)},)}
  for where, value in bad.items():
    part, *path = where.split("__")
    node = parts[part]
    for key in path[:-1]:
      node = node[int(key)] if isinstance(node, tuple) else node[key]
    node[path[-1]] = np.full_like(node[path[-1]], value)
  return TrainState(step=np.array(1), **parts)


UNSOUND = {
    "nan weight": dict(params__conv__kernel=float("nan")),
    "inf bfloat16 weight": dict(params__head__scale=float("inf")),
    "nan running variance": dict(batch_stats__bn__var=float("nan")),
    "inf optimiser moment": dict(opt_state__0__mu=float("-inf")),
}


@pytest.mark.parametrize("case", sorted(UNSOUND))
def test_a_state_with_a_non_finite_value_is_never_saved(case):
  from jreid.train.sound_saver import SoundSaver
  ckpt = FakeCheckpointer()
  saver = SoundSaver(ckpt)
  saver.offer(2, fake_state(), {})
  saver.confirm()
  name = next(iter(UNSOUND[case])).replace("__", "/")
  with pytest.raises(NonFiniteLossError, match=f"the state after step 4 holds non-finite values "
                                               f"\\({name}\\), so it was not saved; training "
                                               "stopped, last good checkpoint: 2"):
    saver.offer(4, fake_state(**UNSOUND[case]), {})
  assert ckpt.saved == [2]


def test_a_snapshot_is_saved_only_after_a_finite_next_loss():
  from jreid.train.sound_saver import SoundSaver
  ckpt = FakeCheckpointer()
  saver = SoundSaver(ckpt)
  saver.offer(3, fake_state(), {})
  assert ckpt.saved == [] and saver.waiting
  with pytest.raises(NonFiniteLossError, match=r"step 4 \(computed from the state after step 3, so "
                                               r"that state was not saved\); training stopped, no "
                                               "checkpoint was saved"):
    saver.refuse(4)
  assert ckpt.saved == [] and not saver.waiting


def test_every_error_of_this_file_is_a_reid_error():
  for error in (CheckpointMismatchError, DatasetLayoutError, NonFiniteLossError, OutputPathError):
    assert issubclass(error, ReIDError)


def test_a_full_disk_while_checkpointing_keeps_the_earlier_steps(tmp_path, synth_root, monkeypatch):
  """Orbax reports tensorstore's ENOSPC as a ValueError carrying the OS error code (seen on a
  full tmpfs); the failed step's temporary folder is removed and the earlier steps stay whole."""
  from jreid.core import checkpoint
  real_save = checkpoint.Checkpointer.save

  def save_then_fill(self, step, state, data_state):
    if step == 2:
      (self.directory / "2.orbax-checkpoint-tmp" / "state").mkdir(parents=True)
      monkeypatch.setattr(self.manager, "save", lambda *a, **k: (_ for _ in ()).throw(ValueError(
          "RESOURCE_EXHAUSTED: Error writing ...: No space left on device [os_error_code='28']")))
    return real_save(self, step, state, data_state)

  monkeypatch.setattr(checkpoint.Checkpointer, "save", save_then_fill)
  workdir = tmp_path / "run"
  with pytest.raises(OutputPathError, match=r"cannot write checkpoint .*/checkpoints/2: no space left "
                                            r"on the device; the earlier checkpoints \[1\] are intact"):
    protocols.run(smoke_config(data__root=str(synth_root), train__steps=3, train__checkpoint_every=1),
                  workdir)
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["1"]
  assert checkpoint.step_problem(workdir / "checkpoints" / "1") == (None, True)  # its digest verifies


# Tool outputs: checked before any work, and a failed write keeps what was there.
EXPORT_OUTS = {
    "a folder": (lambda tmp: tmp, "the export file .* is a folder; expected a file name"),
    "under a file": (lambda tmp: _file(tmp) / "m.pth", "a_file is a file, not a folder"),
    "no format": (lambda tmp: tmp / "model.bin", "cannot tell the format of .*model.bin"),
}


@pytest.mark.parametrize("case", sorted(EXPORT_OUTS))
def test_a_bad_export_target_is_one_line(case, finished_run, tmp_path):
  make, fragment = EXPORT_OUTS[case]
  out = make(tmp_path)
  before = snapshot(tmp_path)
  line = error_line(cli("jreid.tools.export", ["--checkpoint", str(finished_run), "--out", str(out)]),
                    "jreid.tools.export")
  assert re.search(fragment, line), line
  assert snapshot(tmp_path) == before


def test_a_full_disk_during_export_keeps_the_earlier_file(finished_run, tmp_path, monkeypatch):
  """torch.save reports a full disk as a bare RuntimeError ("unexpected pos", seen on a full tmpfs)."""
  import torch
  from jreid.convert import export
  (tmp_path / "exports").mkdir()
  out = tmp_path / "exports" / "model.pth"
  out.write_bytes(b"the earlier export")
  monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(
      RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 82688 vs 82576")))
  monkeypatch.setattr(export.shutil, "disk_usage", lambda path: type("U", (), {"free": 0})())
  line = error_line(cli("jreid.tools.export", ["--checkpoint", str(finished_run), "--out", str(out)]),
                    "jreid.tools.export")
  assert f"cannot write the export file {out}: no space left on the device" in line
  assert out.read_bytes() == b"the earlier export" and list(out.parent.iterdir()) == [out]


def test_a_picture_folder_in_the_way_is_one_line(finished_run):
  (finished_run / "visualize").rename(finished_run / "visualize_was")
  (finished_run / "visualize").write_text("a file")
  before = snapshot(finished_run)
  line = error_line(cli("jreid.tools.visualize", ["--workdir", str(finished_run)]))
  assert "the picture folder" in line and "visualize is a file, not a folder" in line
  assert snapshot(finished_run) == before
