"""The domain-generalisation protocol end to end (`configs/baseline.py:smoke_dg`, 2 steps a run), as a user runs it."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
REPO = pathlib.Path(__file__).resolve().parents[2]
TARGETS = ["synth_tiny_multi/d0", "synth_tiny_multi/d1", "synth_tiny_multi/u0"]


def _main(workdir, data_root):
  result = subprocess.run(
      [sys.executable, "-m", "jreid.main", "--config=configs/baseline.py:smoke_dg",
       f"--workdir={workdir}", f"--config.data.root={data_root}"],
      cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result.stdout


@pytest.fixture(scope="module")
def finished(tmp_path_factory, synth_root):
  workdir = tmp_path_factory.mktemp("dg") / "run"
  return workdir, synth_root, _main(workdir, synth_root)


def test_per_target_table_is_each_run_s_own_numbers(finished):
  workdir, _, stdout = finished
  results = json.loads((workdir / "results.json").read_text())
  assert results["mode"] == "leave_one_out" and list(results["targets"]) == TARGETS
  for target, row in results["targets"].items():
    folder = workdir / row["run"]
    own = json.loads((folder / "results.json").read_text())
    assert list(own) == [target]  # each run is tested on its held-out domain only
    assert {k: row[k] for k in ("mAP", "rank1", "rank5", "mINP")} == {
        k: own[target][k] for k in ("mAP", "rank1", "rank5", "mINP")}
    config = json.loads((folder / "config.json").read_text())
    assert config["protocol"] == "single" and "dg" not in config
    assert config["data"]["test"] == target
    assert sorted(config["data"]["train"].split(",")) == sorted(t for t in TARGETS if t != target)
    assert row["trained_on"] == config["data"]["train"].split(",")
    assert (folder / "checkpoints").is_dir()
  for key in ("mAP", "rank1", "rank5", "mINP"):
    values = [row[key] for row in results["targets"].values()]
    assert results["average"][key] == pytest.approx(sum(values) / 3)
  assert "domain generalisation, leave_one_out" in stdout
  assert "average" in stdout


def test_a_rerun_reads_finished_runs_instead_of_training(finished):
  workdir, data_root, _ = finished
  before = {p: p.stat().st_mtime_ns for p in workdir.glob("*/metrics.jsonl")}
  assert len(before) == 3
  stdout = _main(workdir, data_root)
  assert stdout.count("finished earlier") == 3 and "training steps" not in stdout
  assert {p: p.stat().st_mtime_ns for p in workdir.glob("*/metrics.jsonl")} == before
  assert json.loads((workdir / "results.json").read_text())["average"] is not None


def test_a_stopped_protocol_trains_only_what_is_missing(tmp_path, finished):
  workdir, data_root, _ = finished
  import shutil
  copy = tmp_path / "run"
  shutil.copytree(workdir, copy)
  last = copy / "heldout_synth_tiny_multi_u0"
  shutil.rmtree(last)
  (copy / "results.json").unlink()
  stdout = _main(copy, data_root)
  assert stdout.count("finished earlier") == 2 and stdout.count("training steps") == 1
  again = json.loads((copy / "results.json").read_text())
  original = json.loads((workdir / "results.json").read_text())
  assert again == original  # the retrained run reproduces its numbers: same seed, same data
