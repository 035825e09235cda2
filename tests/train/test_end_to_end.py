"""The command line end to end: outputs, exact resume after SIGKILL, bad inputs (1 vs 4 devices
vs 2 processes: tests/train/test_multiprocess.py).

Each test runs `python -m jreid.main` in a subprocess, as a user would.
"""
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jreid.core import checkpoint
from tests.conftest import cpu_env, write_market_tree

pytestmark = pytest.mark.slow
REPO = pathlib.Path(__file__).resolve().parents[2]
MEASURED = ("loss", "loss_ce", "loss_triplet", "lr", "grad_norm")


def command(workdir, root, *overrides, dataset="market1501"):
  return [sys.executable, "-m", "jreid.main", "--config=configs/baseline.py:smoke",
          f"--workdir={workdir}", f"--config.data.root={root}", f"--config.data.train={dataset}",
          f"--config.data.test={dataset}", *overrides]


def run(args, devices=1, check=True):
  env = cpu_env(devices)
  result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  if check and result.returncode != 0:
    raise AssertionError(f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
  return result


def measurements(workdir):
  lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
  return [{k: v for k, v in json.loads(line).items() if k in MEASURED + ("step",)} for line in lines]


def final_state(workdir):
  ckpt, step = checkpoint.open_existing(workdir)
  return step, ckpt.restore_raw(step)


def test_smoke_config_writes_every_output(smoke_run):
  workdir = smoke_run  # configs/baseline.py:smoke with visualize, rerank, roc and dsr (conftest)
  config = json.loads((workdir / "config.json").read_text())
  assert config["data"]["train"] == "synth_tiny"
  entries = measurements(workdir)
  assert [e["step"] for e in entries] == [1, 2, 3, 4]
  assert all(np.isfinite(e["loss"]) for e in entries)
  results = json.loads((workdir / "results.json").read_text())
  numbers = results["synth_tiny"]
  assert set(numbers) >= {"mAP", "rank1", "rank5", "rank10", "mINP"}
  assert 0 <= numbers["mAP"] <= 100 and 0 <= numbers["rank1"] <= 100
  assert set(numbers["rerank"]) == {"mAP", "rank1", "rank5", "rank10", "mINP"}
  assert set(numbers["roc"]) == {"tpr@fpr=0.0001", "tpr@fpr=0.001", "tpr@fpr=0.01"}
  assert 0 <= numbers["dsr"]["mAP"] <= 100
  assert final_state(workdir)[0] == 4
  pictures = sorted(p.name for p in (workdir / "visualize" / "synth_tiny").iterdir())
  assert {"distance_distribution.png", "roc.png"} <= set(pictures)
  assert sum(name.startswith("rank_list_") for name in pictures) == 10


@pytest.fixture(scope="module")
def market_run(tmp_path_factory):
  """A 2-step smoke run on the Market-layout tree, shared (copied before any change) by the tests."""
  root = tmp_path_factory.mktemp("market_run")
  write_market_tree(root)
  run(command(root / "run", root, "--config.train.steps=2"))
  return root / "run"


def test_visualize_tool_rebuilds_the_run(tmp_path, market_run):
  workdir = tmp_path / "run"
  shutil.copytree(market_run, workdir)
  saved = json.loads((workdir / "config.json").read_text())
  # As written by a jreid older than per-family sections and than `conv_impl`:
  # one flat model section.
  section = saved["model"].pop("backbone")
  saved["model"].update({k: v for k, v in section.items() if k not in ("name", "conv_impl")},
                        backbone=section["name"], num_parts=6, part_dim=256)
  (workdir / "config.json").write_text(json.dumps(saved))
  result = run([sys.executable, "-m", "jreid.tools.visualize", f"--workdir={workdir}",
                "--num_queries=2", "--topk=3"])
  results = json.loads((workdir / "results.json").read_text())["market1501"]
  assert f"mAP {results['mAP']:.2f}" in result.stdout  # same checkpoint, same numbers
  pictures = list((workdir / "visualize" / "market1501").glob("rank_list_*.png"))
  assert len(pictures) == 2
  missing = run([sys.executable, "-m", "jreid.tools.visualize", f"--workdir={tmp_path}"], check=False)
  _one_line_error(missing, "config.json")


def test_resume_after_sigkill_is_exact(tmp_path, market_root):
  overrides = ("--config.train.steps=240", "--config.train.checkpoint_every=20",
               "--config.train.log_every=5", "--config.optim.milestones=(120,)")
  reference = tmp_path / "reference"
  run(command(reference, market_root, *overrides))

  workdir = tmp_path / "killed"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  process = subprocess.Popen(command(workdir, market_root, *overrides), cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  checkpoints = workdir / "checkpoints"
  while time.time() < deadline and process.poll() is None:
    if checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir()):
      break
    time.sleep(0.005)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
  assert not (workdir / "results.json").exists()

  run(command(workdir, market_root, *overrides))  # the same command resumes
  assert measurements(workdir) == measurements(reference)
  step, state = final_state(workdir)
  reference_step, reference_state = final_state(reference)
  assert step == reference_step == 240
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(state)[0],
                          jax.tree.leaves(reference_state)):
    assert np.array_equal(a, b), jax.tree_util.keystr(path)
  assert (json.loads((workdir / "results.json").read_text())
          == json.loads((reference / "results.json").read_text()))


def _one_line_error(result, *fragments):
  assert result.returncode != 0
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("jreid: error: "), last
  for fragment in fragments:
    assert fragment in last, (fragment, last)


def test_missing_dataset_folder(tmp_path):
  result = run(command(tmp_path / "run", tmp_path / "nowhere"), check=False)
  _one_line_error(result, "Market-1501-v15.09.15", "does not exist", "bounding_box_train")


def test_unreadable_image(tmp_path, market_root):
  broken = sorted((market_root / "Market-1501-v15.09.15" / "bounding_box_train").iterdir())[3]
  broken.write_bytes(b"\x00" * 100)
  result = run(command(tmp_path / "run", market_root), check=False)
  _one_line_error(result, "cannot read image", broken.name)


def test_unknown_config_key(tmp_path, market_root):
  result = run(command(tmp_path / "run", market_root, "--config.train.stpes=3"), check=False)
  _one_line_error(result, "stpes", "steps")
  assert not (tmp_path / "run").exists()


def test_checkpoint_from_another_model(tmp_path, market_root, market_run):
  workdir = tmp_path / "run"
  shutil.copytree(market_run, workdir)
  before = (workdir / "results.json").read_bytes()
  result = run(command(workdir, market_root, "--config.train.steps=4", "--config.model.backbone.width=16"),
               check=False)
  _one_line_error(result, "different model", "conv1/kernel")
  assert (workdir / "results.json").read_bytes() == before  # untouched
  assert final_state(workdir)[0] == 2
  other = run(command(tmp_path / "other", market_root, f"--config.resume={workdir}",
                      "--config.model.backbone.name=resnet34"), check=False)
  _one_line_error(other, "different model")


def test_init_from_loads_weights_but_starts_at_step_zero(tmp_path, market_root, market_run):
  source = market_run
  target = tmp_path / "target"
  result = run(command(target, market_root, f"--config.init_from={source}", "--config.train.steps=1",
                       "--config.eval.before_training=True"))
  assert "initialised" in result.stdout
  evals = [json.loads(line) for line in (target / "evals.jsonl").read_text().splitlines()]
  assert evals[0]["step"] == 0
  # The untrained evaluation of the target is the trained evaluation of the source.
  assert evals[0]["market1501"] == json.loads((source / "results.json").read_text())["market1501"]
  assert [e["step"] for e in measurements(target)] == [1]


def test_init_from_recipe_is_trained_once_then_reused(tmp_path):
  data = tmp_path / "data"
  smoke = [f"--config.data.root={data}", "--config.train.steps=1", "--config.eval.before_training=True",
           "--config.init_from=recipe:configs/baseline.py:smoke"]
  first = run([sys.executable, "-m", "jreid.main", "--config=configs/baseline.py:smoke",
               f"--workdir={tmp_path / 'first'}", *smoke])
  (pretrained,) = (data / "pretrained").iterdir()
  assert pretrained.name.startswith("baseline_") and f"pre-training configs/baseline.py:smoke into {pretrained}" in first.stdout
  second = run([sys.executable, "-m", "jreid.main", "--config=configs/baseline.py:smoke",
                f"--workdir={tmp_path / 'second'}", *smoke])
  assert "pre-training" not in second.stdout and f"from {pretrained}" in second.stdout
  # Both runs start from the recipe's final weights: their untrained evaluation is its result.
  recipe = json.loads((pretrained / "results.json").read_text())["synth_tiny"]
  for name in ("first", "second"):
    evals = [json.loads(line) for line in (tmp_path / name / "evals.jsonl").read_text().splitlines()]
    assert evals[0]["step"] == 0 and evals[0]["synth_tiny"] == recipe


def test_non_finite_loss_keeps_only_sound_checkpoints_and_a_corrected_resume_continues(tmp_path,
                                                                                       market_root):
  # lr x1e30 after step 4: update 5 gives finite but huge weights whose forward pass overflows at
  # step 6 whatever the optimiser does, so the state after step 5 is not "good" and is not saved.
  workdir = tmp_path / "run"
  schedule = ("--config.train.steps=8", "--config.train.checkpoint_every=1",
              "--config.optim.milestones=(4,)")
  result = run(command(workdir, market_root, *schedule, "--config.optim.gamma=1e30"), check=False)
  _one_line_error(result, "non-finite loss at step 6", "the state after step 5, so that state was "
                  "not saved", "last good checkpoint: 4")
  step, state = final_state(workdir)
  assert step == 4
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state))
  assert not (workdir / "results.json").exists()
  resumed = run(command(workdir, market_root, *schedule))  # the same run with gamma 0.1
  assert "resumed from" in resumed.stdout and (workdir / "results.json").exists()
  assert [e["step"] for e in measurements(workdir)] == list(range(1, 9))
  assert all(np.isfinite(e["loss"]) for e in measurements(workdir))
