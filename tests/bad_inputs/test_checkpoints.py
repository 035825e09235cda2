"""Damaged checkpoints: every read of a damaged step is one error line naming the step folder.

Each case copies the session's finished `baseline.py:smoke` run (`finished_run`:
4 steps, checkpoint_every=2, so steps 2 and 4, both with digests), damages it,
reads it as a user does and checks the one error line, that it names the
damaged step folder and what is wrong, what it says about an older step, and
that the damaged workdir is byte-identical afterwards. Readers: the export and
visualize command lines in-process; resume (the same command again),
`config.resume` and `config.init_from` through `jreid.protocols.run`, which is
what `jreid.main` calls (its ReIDError becomes the `jreid: error:` line).
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil

import pytest

from jreid import config_blocks
from tests.bad_inputs.conftest import cli, error_line, snapshot
from tests.conftest import SMOKE_EXTRAS


# ------------------------------------------------------------------ damages of one step folder

def _array_file(step: pathlib.Path) -> pathlib.Path:
  """The biggest data file of the step's OCDBT store: it holds most of the arrays."""
  files = [p for p in (step / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  return max(files, key=lambda p: p.stat().st_size)


def truncate(step):
  path = _array_file(step)
  path.write_bytes(path.read_bytes()[:100])
  return path.relative_to(step).as_posix()


def delete(step):
  path = _array_file(step)
  path.unlink()
  return path.relative_to(step).as_posix()


def randomise(step):
  path = _array_file(step)
  path.write_bytes(os.urandom(path.stat().st_size))
  return path.relative_to(step).as_posix()


def flip_byte(step):
  path = _array_file(step)
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0x01
  path.write_bytes(bytes(data))
  return path.relative_to(step).as_posix()


def delete_metadata(step):
  (step / "state" / "_METADATA").unlink()
  return "state/_METADATA"


def garbage_metadata(step):
  (step / "state" / "_METADATA").write_text("{not json")
  return "state/_METADATA"


def garbage_sharding(step):
  (step / "state" / "_sharding").write_text("{not json")
  return "state/_sharding"


def delete_iterator_state(step):
  (step / "data" / "metadata").unlink()
  return "data/metadata"


def iterator_out_of_range(step):
  (step / "data" / "metadata").write_text(json.dumps({"iterator": {"next_index": 10**9}, "records": None}))
  return "data/metadata"


def iterator_missing_key(step):
  (step / "data" / "metadata").write_text(json.dumps({"iterator": {}, "records": None}))
  return "data/metadata"


def delete_state_folder(step):
  shutil.rmtree(step / "state")
  return "state/ is missing"


def empty_folder(step):
  shutil.rmtree(step)
  step.mkdir()
  return "the folder is empty"


def garbage_digest(step):
  (step / "jreid_digest.json").write_text("\x00\x01")
  return "its digest jreid_digest.json is unreadable"


def extra_file(step):
  (step / "state" / "notes.txt").write_text("left here by hand")
  return "state/notes.txt is not in its digest"


def without_digest(damage, says):
  """`damage` on a step written by a jreid before digests: orbax's own error, as one line."""
  def legacy(step):
    (step / "jreid_digest.json").unlink()
    damage(step)
    return says
  legacy.__name__ = f"legacy_{damage.__name__}"
  return legacy


# ------------------------------------------------------------------ readers

def _same_command(workdir: pathlib.Path, synth_root, **overrides):
  """The config `python -m jreid.main --config=configs/baseline.py:smoke` + the session's flags gives."""
  config = config_blocks.load_config("configs/baseline.py:smoke")
  config.data.root = str(synth_root)
  for flag in SMOKE_EXTRAS:
    key, value = flag.removeprefix("--config.").split("=")
    section, name = key.split(".")
    config[section][name] = value == "True"
  for key, value in overrides.items():
    config[key] = value
  return config


def read(reader: str, workdir: pathlib.Path, tmp_path, synth_root, step_folder=None) -> str:
  """The one error line of `reader` on `workdir` (`step_folder` instead, for the export CLI)."""
  if reader == "export":
    outcome = cli("jreid.tools.export", ["--checkpoint", str(step_folder or workdir),
                                         "--out", str(tmp_path / "model.pth")])
    assert not (tmp_path / "model.pth").exists()
    return error_line(outcome, "jreid.tools.export")
  if reader == "visualize":
    return error_line(cli("jreid.tools.visualize", ["--workdir", str(workdir), "--num_queries=1"]))
  argv = ["--config=configs/baseline.py:smoke", f"--config.data.root={synth_root}", *SMOKE_EXTRAS]
  if reader == "resume":
    argv.append(f"--workdir={workdir}")
  else:
    key = "resume" if reader == "config.resume" else "init_from"
    argv += [f"--workdir={tmp_path / 'other'}", f"--config.{key}={workdir}"]
  line = error_line(cli("jreid.main", argv))
  assert not (tmp_path / "other").exists()  # a refused run writes nothing
  return line


# ------------------------------------------------------------------ the cases

LATEST = (4, "step 2 is intact (verified by its digest): move {w}/checkpoints/4 out of {w}/checkpoints "
             "to use it, or pass {w}/checkpoints/2 itself as config.resume (in a new workdir)")

CASES = {  # name: (damage, reader, step damaged, what the line says about the older step)
    "truncated_array_export": (truncate, "export", *LATEST),
    "deleted_array_visualize": (delete, "visualize", *LATEST),
    "randomised_array_resume": (randomise, "resume", *LATEST),
    "flipped_byte_export": (flip_byte, "export", *LATEST),
    "flipped_byte_resume": (flip_byte, "resume", *LATEST),
    "flipped_byte_init_from": (flip_byte, "init_from", *LATEST),
    "deleted_metadata_export": (delete_metadata, "export", *LATEST),
    "garbage_metadata_config_resume": (garbage_metadata, "config.resume", *LATEST),
    "garbage_sharding_visualize": (garbage_sharding, "visualize", *LATEST),
    "deleted_iterator_state_resume": (delete_iterator_state, "resume", *LATEST),
    "iterator_out_of_range_resume": (iterator_out_of_range, "resume", *LATEST),
    "iterator_missing_key_config_resume": (iterator_missing_key, "config.resume", *LATEST),
    "missing_state_folder_export": (delete_state_folder, "export", *LATEST),
    "emptied_step_visualize": (empty_folder, "visualize", *LATEST),
    "garbage_digest_export": (garbage_digest, "export", *LATEST),
    "extra_file_init_from": (extra_file, "init_from", *LATEST),
    "legacy_truncated_array_export": (
        without_digest(truncate, "orbax cannot read it for this run (OUT_OF_RANGE"), "export", *LATEST),
    "legacy_randomised_array_visualize": (
        without_digest(randomise, "orbax cannot read it for this run ("), "visualize", *LATEST),
    "legacy_truncated_array_init_from": (
        without_digest(truncate, "orbax cannot read it for this run (OUT_OF_RANGE"), "init_from",
        *LATEST),
    "legacy_deleted_metadata_config_resume": (
        without_digest(delete_metadata, "state/_METADATA is missing"), "config.resume", *LATEST),
    "legacy_missing_state_folder_resume": (
        without_digest(delete_state_folder, "it has no state/ folder"), "resume", *LATEST),
    "older_step_flipped_export": (flip_byte, "export", 2, "there is no older step"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_damaged_step_is_one_error_line_naming_it(name, finished_run, tmp_path, synth_root):
  damage, reader, step, older = CASES[name]
  workdir = finished_run
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4"]
  folder = workdir / "checkpoints" / str(step)
  says = damage(folder)
  before = snapshot(workdir)
  line = read(reader, workdir, tmp_path, synth_root, step_folder=folder if step != 4 else None)
  assert f"checkpoint {folder} cannot be used: " in line and says in line, line
  assert older.format(w=workdir) in line, line
  assert snapshot(workdir) == before


def test_every_step_damaged_says_no_older_step_is_intact(finished_run, tmp_path, synth_root):
  for step in (2, 4):
    flip_byte(finished_run / "checkpoints" / str(step))
  before = snapshot(finished_run)
  line = read("export", finished_run, tmp_path, synth_root)
  assert line.endswith(r"; no older step is intact (checked [2])") and "checkpoints/4 cannot be used" in line
  assert snapshot(finished_run) == before


@pytest.mark.parametrize("stray", ["99", "99/junk.txt"])
def test_a_stray_step_folder_is_not_taken_for_the_latest_checkpoint(stray, finished_run, tmp_path,
                                                                     synth_root):
  """Orbax lists any digit-named folder as a step; an empty or foreign one is refused, naming step 4."""
  (finished_run / "checkpoints" / "99").mkdir()
  if stray != "99":
    (finished_run / "checkpoints" / stray).write_text("x")
  before = snapshot(finished_run)
  for reader in ("export", "resume"):
    line = read(reader, finished_run, tmp_path, synth_root)
    stray_folder = finished_run / "checkpoints" / "99"
    assert f"checkpoint {stray_folder} cannot be used: " in line, line
    assert f"step 4 is intact (verified by its digest): move {stray_folder} out of" in line
  assert snapshot(finished_run) == before


# ------------------------------------------------------------------ what is (rightly) accepted

@pytest.mark.parametrize("leftover", ["6.orbax-checkpoint-tmp-1700000000", "6.tmp"])
def test_an_unfinished_save_is_ignored(leftover, finished_run, tmp_path):
  """What a run killed mid-save leaves (orbax's temporary folder) is not a step: step 4 is read."""
  (finished_run / "checkpoints" / leftover / "state").mkdir(parents=True)
  before = snapshot(finished_run)
  outcome = cli("jreid.tools.export", ["--checkpoint", str(finished_run), "--out", str(tmp_path / "m.pth")])
  assert outcome.code == 0, outcome.err[-2000:]
  assert f"from {finished_run / 'checkpoints' / '4'} to" in outcome.out
  assert snapshot(finished_run) == before


def test_the_intact_step_the_error_names_can_be_used(finished_run, tmp_path):
  flip_byte(finished_run / "checkpoints" / "4")
  older = finished_run / "checkpoints" / "2"
  outcome = cli("jreid.tools.export", ["--checkpoint", str(older), "--out", str(tmp_path / "m.pth")])
  assert outcome.code == 0 and f"from {older} to" in outcome.out, outcome.err[-2000:]


def test_a_step_without_digest_is_read_with_a_note(finished_run, tmp_path):
  """Written by a jreid before digests: accepted, and the user is told it was not verified."""
  (finished_run / "checkpoints" / "4" / "jreid_digest.json").unlink()
  outcome = cli("jreid.tools.export", ["--checkpoint", str(finished_run), "--out", str(tmp_path / "m.pth")])
  assert outcome.code == 0, outcome.err[-2000:]
  assert (f"note: checkpoint {finished_run / 'checkpoints' / '4'} has no jreid_digest.json"
          in outcome.out)
