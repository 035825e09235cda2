"""The lifelong protocol end to end on two tiny domains (`configs/dasa.py:smoke`), as a user runs it.

One run (pre-training recipe, two DASA steps, unseen evaluation) is shared by
the tests: frozen convs stay bit-identical, a saved bank reproduces its
domain's features exactly, every test camera routes to its own domain.
"""
import json
import os
import pathlib
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from jreid.core import checkpoint, partition
from jreid.data import datasets, pipeline
from jreid.evaluation import routing
from jreid.methods.dasa import STRATEGIES
from jreid.models.reid import build_model

pytestmark = pytest.mark.slow
REPO = pathlib.Path(__file__).resolve().parents[2]
DOMAINS = ["synth_tiny_multi/d0", "synth_tiny_multi/d1"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, synth_root):
  root = tmp_path_factory.mktemp("lifelong")
  workdir = root / "run"
  result = subprocess.run(
      [sys.executable, "-m", "jreid.main", "--config=configs/dasa.py:smoke",
       f"--workdir={workdir}", f"--config.data.root={synth_root}"],
      cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
      timeout=900)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return synth_root, workdir, result.stdout


def _variables(folder):
  ckpt, step = checkpoint.open_existing(folder)
  raw = ckpt.restore_raw(step)
  ckpt.close()
  return {"params": raw["params"], "batch_stats": raw["batch_stats"]}


def _step_dirs(workdir):
  return sorted(p for p in workdir.iterdir() if p.name.startswith("step"))


def test_results_table_and_storage(finished):
  _, workdir, stdout = finished
  results = json.loads((workdir / "results.json").read_text())
  assert results["domains"] == DOMAINS
  assert [row["step"] for row in results["steps"]] == DOMAINS
  assert list(results["steps"][0]["seen"]) == DOMAINS[:1]
  assert list(results["steps"][1]["seen"]) == DOMAINS
  last = results["steps"][1]
  assert last["seen_average"]["mAP"] == pytest.approx(np.mean([v["mAP"] for v in last["seen"].values()]))
  assert set(results["unseen_policies"]) == set(routing.POLICIES)
  assert results["unseen"] == results["unseen_policies"][results["unseen_policy"]] != {}
  assert results["unseen_policy"] == "stats"  # the default, measured best
  bank_file = sorted((workdir / "banks").glob("2_*.msgpack"))[0]
  assert results["storage"]["bank_bytes"] == partition.nbytes(routing.load_bank(bank_file))
  assert "seen avg" in stdout and "one domain's bank" in stdout
  assert (workdir / "seen_average.png").stat().st_size > 0


def test_frozen_parameters_are_bit_identical_across_domains(finished):
  data, workdir, _ = finished
  pretrained = _variables(next((data / "pretrained").glob("pretrain_synth_*")))["params"]
  frozen = STRATEGIES["dasa"].trainable
  reference = dict(zip(partition.paths(partition.exclude(pretrained, frozen)),
                       jax.tree.leaves(partition.exclude(pretrained, frozen))))
  assert any(name.endswith("conv1/kernel") for name in reference)
  for folder in _step_dirs(workdir):
    params = partition.exclude(_variables(folder)["params"], frozen)
    got = dict(zip(partition.paths(params), jax.tree.leaves(params)))
    for name, value in reference.items():
      assert np.asarray(value).tobytes() == np.asarray(got[name]).tobytes(), (folder.name, name)


def test_a_saved_bank_reproduces_its_domain_s_features(finished):
  data, workdir, _ = finished
  first, last = (_variables(folder) for folder in _step_dirs(workdir))
  bank = routing.load_bank(sorted((workdir / "banks").glob("1_*.msgpack"))[0])
  restored = {"params": partition.merge(last["params"], bank["params"]),
              "batch_stats": partition.merge(last["batch_stats"], bank["batch_stats"])}
  config = json.loads((workdir / "config.json").read_text())
  model_config = ml_collections.ConfigDict(config["model"])
  model = build_model(model_config, first["params"]["head"]["classifier"]["kernel"].shape[-1])
  split = datasets.get(DOMAINS[0], data)
  options = pipeline.ImageOptions.from_config(ml_collections.ConfigDict(config["data"]))
  batch = next(iter(pipeline.test_batches(split.query, options=options, batch_size=16)))
  restored["params"]["head"]["classifier"] = first["params"]["head"]["classifier"]
  expected, _ = model.apply(first, batch["image"], train=False)
  got, _ = model.apply(restored, batch["image"], train=False)
  assert np.asarray(got).tobytes() == np.asarray(expected).tobytes()
  # ... and the last step's own bank does not: the banks really differ. (Features do
  # not use the classifier; both smoke domains have 6 identities, so shapes agree.)
  assert not np.array_equal(model.apply(last, batch["image"], train=False)[0], expected)


def test_every_camera_routes_to_its_own_domain(finished):
  data, workdir, _ = finished
  camera_map = json.loads((workdir / "banks" / "routing.json").read_text())
  assert camera_map["domains"] == DOMAINS
  for index, name in enumerate(DOMAINS):
    split = datasets.get(name, data)
    for record in split.query + split.gallery + split.train:
      assert camera_map["cameras"][routing.camera_key(name, record.camid)] == index
  unseen = datasets.get("synth_tiny_multi/u0", data)
  assert not any(routing.camera_key("synth_tiny_multi/u0", r.camid) in camera_map["cameras"]
                 for r in unseen.query + unseen.gallery)
