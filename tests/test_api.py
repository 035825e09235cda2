"""The public API: `jreid.load(workdir)` reproduces a finished run's evaluation; `jreid.train` runs protocols.

The references are the run's own: its results.json, and the features the
evaluation extracts (`retrieval.extract_features` over the pipeline's test
batches) with a model rebuilt here from config.json and the checkpoint.
"""
import json
import shutil
import subprocess
import sys
import types

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from jreid import protocols
from jreid.config_blocks import load_config
import jreid
from jreid.core import checkpoint
from jreid.data import datasets
from jreid.errors import ConfigError, RunNotFoundError
from jreid.evaluation.retrieval import extract_features
from jreid.train import loop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loaded(smoke_run):
  return jreid.load(smoke_run)


@pytest.fixture(scope="module")
def query(smoke_run):
  """The run's query images, decoded and resized here as the test pipeline does (PIL bilinear)."""
  config = json.loads((smoke_run / "config.json").read_text())
  height, width = config["data"]["height"], config["data"]["width"]
  records = datasets.get(config["data"]["test"], config["data"]["root"]).query
  pixels = []
  for record in records:
    with Image.open(record.path) as image:
      image = image.convert("RGB")
      if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR)
      pixels.append(np.asarray(image))
  return records, np.stack(pixels)


@pytest.fixture(scope="module")
def evaluation_features(smoke_run, query):
  """What the run's evaluation embeds for its queries, from an independently rebuilt model."""
  config = ml_collections.ConfigDict(json.loads((smoke_run / "config.json").read_text()))
  run = loop.prepare(config)
  ckpt, step = checkpoint.open_existing(smoke_run)
  state, _ = ckpt.restore(step, run.abstract_state)
  ckpt.close()
  return extract_features(jax.jit(run.method.features), state, query[0], mesh=run.mesh,
                          options=run.options, batch_size=config.eval.batch_size)


def test_features_of_raw_pixels_are_the_evaluation_s(loaded, query, evaluation_features):
  records, pixels = query
  assert pixels.dtype == np.uint8 and len(pixels) > loaded.config.eval.batch_size // 2
  got = loaded.features(pixels)
  assert got.dtype == np.float32 and got.shape == evaluation_features.shape
  np.testing.assert_array_equal(got, evaluation_features)
  assert loaded.step == 4 and loaded.config.data.test == "synth_tiny"


def test_float_pixels_and_any_batch_size_give_the_same_features(loaded, query):
  pixels = query[1]
  reference = loaded.features(pixels)
  np.testing.assert_array_equal(loaded.features(pixels.astype(np.float64)), reference)
  np.testing.assert_array_equal(loaded.features(pixels[:5].astype(np.float32)), reference[:5])
  assert loaded.config.eval.batch_size == 32
  tiled = np.concatenate([pixels] * 3)  # more than two batches, the last one partial
  assert len(tiled) > 64 and len(tiled) % 32
  np.testing.assert_array_equal(loaded.features(tiled), np.concatenate([reference] * 3))
  np.testing.assert_array_equal(loaded.features(pixels[:1]), reference[:1])
  assert loaded.features(pixels[:0]).shape == (0, reference.shape[1])


@pytest.mark.parametrize("bad,match", [
    (lambda p: p.transpose(0, 3, 1, 2), r"expects \(N, 32, 16, 3\).*got shape \(\d+, 3, 32, 16\)"),
    (lambda p: p[0], r"got shape \(32, 16, 3\)"),
    (lambda p: np.zeros((2, 64, 32, 3), np.uint8), r"got shape \(2, 64, 32, 3\).*resize"),
    (lambda p: p.astype(np.int32), "got dtype int32"),
    (lambda p: p.astype(np.float32) / 255 - 0.5, "already normalised"),
])
def test_wrong_pixels_say_what_was_expected(loaded, query, bad, match):
  with pytest.raises(ValueError, match=match):
    loaded.features(bad(query[1]))


def test_evaluate_reproduces_results_json(smoke_run, loaded):
  results = json.loads((smoke_run / "results.json").read_text())
  got = loaded.evaluate("synth_tiny")
  assert set(got) >= {"rerank", "roc", "dsr"}  # the run's evaluation extras apply
  assert json.loads(json.dumps(got)) == results["synth_tiny"]


def test_evaluate_another_dataset(loaded):
  numbers = loaded.evaluate("synth_tiny_multi/d0")
  split = datasets.get("synth_tiny_multi/d0", loaded.config.data.root)
  assert numbers["num_query"] == len(split.query) and 0 <= numbers["mAP"] <= 100


def test_load_names_what_is_missing(tmp_path, smoke_run):
  with pytest.raises(RunNotFoundError, match="no run folder"):
    jreid.load(tmp_path / "nothing")
  with pytest.raises(RunNotFoundError, match="config.json not found"):
    jreid.load(tmp_path)
  shutil.copy(smoke_run / "config.json", tmp_path / "config.json")
  with pytest.raises(RunNotFoundError, match="no checkpoints/ folder"):
    jreid.load(tmp_path)
  (tmp_path / "checkpoints").mkdir()
  with pytest.raises(RunNotFoundError, match="no complete checkpoint"):
    jreid.load(tmp_path)


def test_a_protocol_folder_names_its_runs(tmp_path, smoke_run):
  config = json.loads((smoke_run / "config.json").read_text())
  (tmp_path / "config.json").write_text(json.dumps(dict(config, protocol="dg")))
  (tmp_path / "heldout_a" / "checkpoints").mkdir(parents=True)
  with pytest.raises(RunNotFoundError, match=r"'dg' protocol folder.*load one of \['heldout_a'\]"):
    jreid.load(tmp_path)


def test_train_runs_the_config_s_protocol(tmp_path, monkeypatch):
  """A protocol is a module with `run(config, workdir)` and a row of PROTOCOLS; it gets a
  validated config (`protocols.validate`), so a bad value never reaches it."""
  calls = []
  module = types.ModuleType("fake_protocol")
  module.run = lambda config, workdir: calls.append(workdir) or {"ran": config.protocol}
  monkeypatch.setitem(sys.modules, "fake_protocol", module)
  monkeypatch.setitem(protocols.PROTOCOLS, "fake", protocols.Protocol("fake_protocol", None))
  config = load_config("configs/baseline.py:smoke")
  config.protocol = "fake"
  assert jreid.train(config, tmp_path) == {"ran": "fake"} and calls == [tmp_path]
  config.train.batch_size = 0
  with pytest.raises(ConfigError, match="config.train.batch_size=0: expected an integer >= 1"):
    jreid.train(config, tmp_path)
  assert calls == [tmp_path]
  with pytest.raises(ConfigError, match="unknown protocol 'nope'"):
    jreid.train(ml_collections.ConfigDict(dict(protocol="nope")), tmp_path)


def test_import_jreid_stays_free_of_jax():
  code = ("import sys, jreid; jreid.load; jreid.train; assert callable(jreid.train); "
          "assert 'jax' not in sys.modules, 'jax imported'; import jreid.train.loop; "
          "assert callable(jreid.train) and jreid.train.loop.train_and_evaluate")
  subprocess.run([sys.executable, "-c", code], check=True)
