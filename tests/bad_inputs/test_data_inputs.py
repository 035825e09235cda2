"""Bad data: dataset files, weights files, test splits and images a user can get wrong.

Each case writes a small dataset (or weights file) the way the real ones are,
breaks one thing, and checks the refusal names it: readers and weights
loading are called directly, evaluation through `retrieval.evaluate_split`,
and a few cases run the real loop in-process (`jreid.protocols.run` on
`configs/baseline.py:smoke` over a tiny Market-1501 tree, 2 steps), one of
them through `jreid.main` for the one-line error.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import save_file

from jreid import config_blocks, protocols
from jreid.convert import load, torch_names
from jreid.core import sharding
from jreid.data import datasets, pipeline
from jreid.data.records import Split, relabel
from jreid.errors import (ConfigError, DatasetLayoutError, EvaluationError, ImageReadError,
                          ReIDError, WeightsFileError)
from jreid.evaluation import metrics, retrieval
from jreid.models.backbones import BACKBONES
from jreid.models.heads import BNNeck
from jreid.models.pooling import AvgPool
from jreid.models.reid import ReID
from tests.bad_inputs.conftest import Outcome, error_line
from tests.conftest import FakeTree, bomb_png, write_market_tree

MARKET = "Market-1501-v15.09.15"
REPO = pathlib.Path(__file__).resolve().parents[2]
OPTIONS = pipeline.ImageOptions(height=16, width=8)


def market(tmp_path) -> pathlib.Path:
  write_market_tree(tmp_path)
  return tmp_path / MARKET


def rename(folder: pathlib.Path, old: str, new: str) -> pathlib.Path:
  (folder / old).rename(folder / new)
  return folder / new


# --- Readers: ids and cameras outside the dataset's protocol -----------------------------------

def _market_renamed(folder: str, old: str, new: str, says: str):
  """A Market case: one file of `folder` renamed to a name outside the protocol."""
  def write(tmp_path):
    return "market1501", rename(market(tmp_path) / folder, old, new), says
  write.__name__ = f"_market_{new}_in_{folder}"  # the test id drops the underscore
  return write


_market_c0_query = _market_renamed("query", "0100_c1s1_000000_01.jpg", "0100_c0s1_000000_01.jpg",
                                   "camera c0 does not exist")
_market_c0_train = _market_renamed("bounding_box_train", "0001_c1s1_000000_01.jpg",
                                   "0001_c0s1_000000_01.jpg", "camera c0 does not exist")
_market_negative_pid = _market_renamed("bounding_box_train", "0002_c1s1_000000_01.jpg",
                                       "-2_c1s1_000000_01.jpg", "person id -2 does not exist")
_market_distractor_query = _market_renamed("query", "0101_c1s1_000000_01.jpg",
                                           "0000_c1s1_000000_01.jpg",
                                           "person id 0 marks a gallery distractor")


def _duke_c0_gallery(tmp_path):
  tree = FakeTree(tmp_path)
  tree.images("DukeMTMC-reID/bounding_box_train", ["0001_c1_f0000001.jpg", "0001_c2_f0000002.jpg"])
  tree.images("DukeMTMC-reID/query", ["0005_c1_f0000003.jpg"])
  [bad] = tree.images("DukeMTMC-reID/bounding_box_test", ["0005_c2_f0000004.jpg",
                                                          "0005_c0_f0000005.jpg"])[1:]
  return "dukemtmc", bad, "camera c0 does not exist"


def _msmt17_camera_00(tmp_path):
  tree = FakeTree(tmp_path)
  names = {"train": "0000/0000_000_01_0303morning_0000_0.jpg",
           "query": "0001/0001_001_00_0303morning_0001_0.jpg",
           "gallery": "0001/0001_002_02_0303morning_0002_0.jpg"}
  for part, name in names.items():
    tree.images(f"MSMT17_V1/{'train' if part == 'train' else 'test'}", [name])
    tree.text(f"MSMT17_V1/list_{part}.txt", [f"{name} {name[:4].lstrip('0') or 0}"])
  tree.text("MSMT17_V1/list_val.txt", [f"{names['train']} 0"])
  return "msmt17", tmp_path / "MSMT17_V1" / "list_query.txt", "camera 00 does not exist"


def _grid_distractor_probe(tmp_path):
  from scipy.io import savemat
  tree = FakeTree(tmp_path)
  [bad] = tree.images("underground_reid/probe", ["0001_1_1_1_1_1_1.jpeg", "0000_2_2_1_1_1_1.jpeg"])[1:]
  tree.images("underground_reid/gallery", ["0001_3_1_1_1_1_1.jpeg", "0000_4_1_1_1_1_1.jpeg"])
  splits = np.empty((1, 10), dtype=object)
  for k in range(10):
    splits[0, k] = {"a": np.zeros(1), "b": np.zeros(1), "trainIdx": np.array([[5]], dtype=float)}
  savemat(tmp_path / "underground_reid" / "features_and_partitions.mat", {"trainIdxAll": splits})
  return "grid", bad, "id 0 is not an id of this dataset"


def _cuhk01_image_5(tmp_path):
  tree = FakeTree(tmp_path)
  names = [f"{p:04d}{k:03d}.png" for p in (1, 2) for k in range(1, 5)] + ["0002005.png"]
  return "cuhk01", tree.images("cuhk01/campus", names)[-1], "image number 005 does not exist"


@pytest.mark.parametrize("write", [_market_c0_query, _market_c0_train, _market_negative_pid,
                                   _market_distractor_query, _duke_c0_gallery, _msmt17_camera_00,
                                   _grid_distractor_probe, _cuhk01_image_5],
                         ids=lambda f: f.__name__[1:])
def test_reader_refuses(tmp_path, write):
  name, bad_file, why = write(tmp_path)
  load_function = datasets.DATASETS[name][1]
  layout = __import__(getattr(load_function, "func", load_function).__module__,
                      fromlist=["EXPECTED_LAYOUT"]).EXPECTED_LAYOUT
  with pytest.raises(DatasetLayoutError, match=why) as err:
    datasets.get(name, tmp_path)
  message = str(err.value)
  assert str(bad_file) in message and message.endswith(layout) and "\n" not in message


# --- Weights files: tensors that cannot be a float parameter ------------------------------------

@pytest.fixture(scope="module")
def model_variables():
  """Variables of a small ReID model (resnet18 at width 8), every leaf in [0.5, 1.5)."""
  model = ReID(backbone=BACKBONES["resnet18"](width=8, last_stride=1), pooling=AvgPool(),
               head=BNNeck(num_classes=5))
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 32, 3)),
                                             train=False))
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda leaf: rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32), shapes)


def weights_file(path: pathlib.Path, variables, name: str | None = None, damage=None):
  """The FastReID names of `variables` in a .safetensors or .pth file, tensor `name` damaged."""
  arrays, _ = torch_names.to_state_dict(variables, "fastreid")
  arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
  arrays["backbone.bn1.num_batches_tracked"] = np.array(7, np.int64)  # PyTorch's own, skipped
  if name is not None:
    arrays[name] = damage(arrays[name])
  if path.suffix == ".safetensors":
    save_file(arrays, str(path))
  else:
    torch.save({"model": {k: torch.from_numpy(v) for k, v in arrays.items()}}, path)
  return path


@pytest.mark.parametrize("file_name,tensor,damage,why", [
    ("int.safetensors", "backbone.conv1.weight", lambda v: v.astype(np.int32),
     "is int32, but the model's params/backbone/conv1/kernel is float32"),
    ("bool.safetensors", "backbone.bn1.weight", lambda v: v > 1.0,
     "is bool, but the model's params/backbone/bn1/scale is float32"),
    ("int.pth", "backbone.layer1.0.conv2.weight", lambda v: v.astype(np.int64),
     "is int64, but the model's params/backbone/layer1_0/conv2/kernel"),
    ("nan.safetensors", "backbone.layer3.0.bn1.bias", lambda v: v * np.nan,
     "holds 32 NaN/inf values of 32"),
    ("negative_var.pth", "backbone.bn1.running_var", lambda v: v - 1.2,
     "BatchNorm running variance, the model's batch_stats/backbone/bn1/var"),
], ids=["int32_safetensors", "bool_safetensors", "int64_pth", "nan", "negative_running_var"])
def test_weights_file_refuses(tmp_path, model_variables, file_name, tensor, damage, why):
  path = weights_file(tmp_path / file_name, model_variables, tensor, damage)
  with pytest.raises(WeightsFileError, match=why) as err:
    load.load_torch_weights(path, model_variables)
  assert str(err.value).startswith(f"{path}: tensor {tensor} ")


def test_weights_file_integer_buffers_stay_skipped(tmp_path, model_variables):
  _, report = load.load_torch_weights(weights_file(tmp_path / "w.pth", model_variables),
                                      model_variables)
  assert "backbone.bn1.num_batches_tracked" in report.ignored and report.missing == []


# --- Evaluation on splits that cannot be scored -------------------------------------------------

def colour_features(state, images):
  return images.reshape(images.shape[0], 4, -1, 3).mean(axis=2).reshape(images.shape[0], -1)


def _records(split, part, **fields):
  return [dataclasses.replace(r, **{k: f(r) for k, f in fields.items()}) for r in getattr(split, part)]


EVAL_CASES = {  # id -> (split change, post-processing, features scale, error, message)
    "single_camera": (lambda s: Split([], _records(s, "query", camid=lambda r: 0),
                                      _records(s, "gallery", camid=lambda r: 0)),
                      retrieval.PostProcessing(rerank=True, roc=True, dsr=True), 1.0, EvaluationError,
                      "no query has a correct match .*every query and gallery image has camera 0"),
    "query_ids_absent": (lambda s: Split([], _records(s, "query", pid=lambda r: r.pid + 500), s.gallery),
                         retrieval.PostProcessing(cuhk03_single_shot=True), 1.0, EvaluationError,
                         r"none of the 6 queries' ids \(e.g. 600, 601"),
    "no_query": (lambda s: Split(s.train, [], s.gallery), retrieval.PostProcessing(), 1.0,
                 EvaluationError, "has 0 query and 25 gallery images"),
    "nan_features": (lambda s: s, retrieval.PostProcessing(query_expansion="qe"), np.nan,
                     EvaluationError, "NaN or inf in 6 of 6 query features.*negative BatchNorm"),
    "inf_features": (lambda s: s, retrieval.PostProcessing(rerank=True), np.inf, EvaluationError,
                     "NaN or inf in 6 of 6 query features, 25 of 25 gallery features"),
    "roc_one_identity": (lambda s: Split([], s.query[:1], [g for g in s.gallery if g.pid == 100]),
                         retrieval.PostProcessing(roc=True), 1.0, EvaluationError,
                         "eval.roc needs query-gallery pairs of different ids"),
    "aqe_k_beyond_gallery": (lambda s: s, retrieval.PostProcessing(query_expansion="alpha_qe",
                                                                   aqe_k=40), 1.0,
                             ConfigError, "eval.aqe_k=40 asks for 39 gallery neighbours"),
}


@pytest.mark.parametrize("case", sorted(EVAL_CASES))
def test_evaluation_refuses(tmp_path, case):
  change, post, scale, error, why = EVAL_CASES[case]
  write_market_tree(tmp_path)
  split = change(datasets.get("market1501", tmp_path))
  features = jax.jit(lambda s, x: colour_features(s, x) * scale)
  with pytest.raises(error, match=f"(?=.*test set 'market1501'.*).*{why}") as err:
    retrieval.evaluate_split(features, None, split, mesh=sharding.data_mesh(), options=OPTIONS,
                             batch_size=8, metric="cosine", max_rank=5, post=post,
                             spatial_fn=jax.jit(lambda s, x: x.reshape(x.shape[0], -1, 3)),
                             name="market1501")
  assert "\n" not in str(err.value)


def test_metrics_without_a_valid_query_say_why():
  with pytest.raises(ValueError, match="undefined: every query and gallery image has camera 2"):
    metrics.evaluate_rank(np.zeros((2, 3)), [1, 2], [1, 2, 2], [2, 2], [2, 2, 2])


# --- Images that cannot be decoded, through the pipelines --------------------------------------

def _bomb(path):
  path.write_bytes(bomb_png(20000, 20000))
  return "exceeds limit of 178956970 pixels"


def _bomb_warning_range(path):
  path.write_bytes(bomb_png(10000, 10000))
  return "claims 10000x10000 = 100000000 pixels"


def _truncated(path):
  path.write_bytes(path.read_bytes()[:300])
  return "cannot read image"


def _empty(path):
  path.write_bytes(b"")
  return "cannot identify image file"


@pytest.mark.parametrize("part,damage", [
    ("train", _bomb), ("train", _truncated), ("train", _empty),
    ("query", _bomb), ("query", _bomb_warning_range), ("query", _truncated), ("query", _empty),
], ids=lambda v: v if isinstance(v, str) else v.__name__[1:])
def test_image_refused_in_pipeline(tmp_path, part, damage):
  """Through grain's reader threads, for a training batch and for test feature batches."""
  write_market_tree(tmp_path)
  split = datasets.get("market1501", tmp_path)
  if part == "train":
    records = relabel(split.train)
    damaged = [r.path for r in records if r.pid == 0]  # all 4 images of an id: epoch 0 reads them
    batches = pipeline.train_dataset(records, options=OPTIONS, batch_size=16, num_instances=4,
                                     num_steps=2, seed=0, num_threads=2)
  else:
    damaged = [split.query[3].path]
    batches = pipeline.test_batches(split.query, options=OPTIONS, batch_size=4, num_threads=2)
  why = [damage(pathlib.Path(path)) for path in damaged][0]
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    with pytest.raises(ImageReadError, match=why) as err:
      list(batches)
  assert any(str(err.value).startswith(f"cannot read image {path}: ") for path in damaged)


def test_image_folder_named_like_a_jpg_in_a_list_file(tmp_path):
  """A list-file set reads what it lists: a folder there is an unreadable image, named."""
  image = tmp_path / "MSMT17_V1" / "test" / "0001" / "0001_001_02_0303morning_0001_0.jpg"
  image.mkdir(parents=True)
  from jreid.data.records import Record
  with pytest.raises(ImageReadError, match=f"cannot read image {image}: .*Is a directory"):
    list(pipeline.test_batches([Record(str(image), 1, 1)], options=OPTIONS, batch_size=2))


# --- The real loop, in-process -----------------------------------------------------------------

def smoke(root: pathlib.Path, **overrides):
  """`configs/baseline.py:smoke` on the Market-1501 tree under `root`, 2 steps."""
  config = config_blocks.load_config("configs/baseline.py:smoke")
  config.data.train = config.data.test = "market1501"
  config.data.root = str(root)
  config.train.steps = 2
  config.update(overrides)
  return config


def _run_query_c0(tmp_path):
  rename(market(tmp_path) / "query", "0102_c1s1_000000_01.jpg", "0102_c0s1_000000_01.jpg")
  return {}, DatasetLayoutError, "0102_c0s1_000000_01.jpg: camera c0 does not exist"


def _run_bomb_in_train(tmp_path):
  for path in (market(tmp_path) / "bounding_box_train").glob("0003_*"):
    path.write_bytes(bomb_png(20000, 20000))
  return {}, ImageReadError, "bounding_box_train/0003_c.*decompression-bomb guard"


def _run_bomb_in_query(tmp_path):
  (market(tmp_path) / "query" / "0104_c1s1_000000_01.jpg").write_bytes(bomb_png(20000, 20000))
  return {}, ImageReadError, "query/0104_c1s1_000000_01.jpg: Image size .*decompression-bomb"


def _run_single_camera(tmp_path):
  write_market_tree(tmp_path, cameras=1)
  return {}, EvaluationError, ("no query has a correct match .*all 6 queries find their id in the "
                               r"gallery only under their own camera \(camera 0, 0-based\)")


def _run_int32_init_from(tmp_path, variables):
  market(tmp_path)
  path = weights_file(tmp_path / "r18.safetensors", variables, "backbone.conv1.weight",
                      lambda v: v.astype(np.int32))
  return {"init_from": str(path)}, WeightsFileError, "backbone.conv1.weight is int32"


@pytest.mark.parametrize("write", [_run_query_c0, _run_bomb_in_train, _run_bomb_in_query,
                                   _run_single_camera, _run_int32_init_from],
                         ids=lambda f: f.__name__[5:])
def test_training_run_refuses(tmp_path, write, model_variables):
  args = (tmp_path, model_variables) if write is _run_int32_init_from else (tmp_path,)
  overrides, error, why = write(*args)
  config = smoke(tmp_path, **overrides)
  with pytest.raises(error, match=why) as err:
    protocols.run(config, tmp_path / "run")
  assert isinstance(err.value, ReIDError) and "\n" not in str(err.value)


def test_command_line_prints_one_error_line(tmp_path):
  """`python -m jreid.main`, as a user runs it: one error line, no traceback."""
  rename(market(tmp_path) / "query", "0101_c1s1_000000_01.jpg", "0101_c0s1_000000_01.jpg")
  result = subprocess.run(
      [sys.executable, "-m", "jreid.main", "--config=configs/baseline.py:smoke",
       f"--workdir={tmp_path / 'run'}", f"--config.data.root={tmp_path}",
       "--config.data.train=market1501", "--config.data.test=market1501", "--config.train.steps=2"],
      cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
      timeout=300)
  line = error_line(Outcome(result.returncode, result.stdout, result.stderr))
  assert line.startswith("jreid: error: ") and "0101_c0s1_000000_01.jpg: camera c0" in line
