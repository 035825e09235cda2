"""`config.init_from` with a PyTorch weights file, how real runs start from ImageNet / LUPerson."""
import dataclasses
import re

import jax
import numpy as np
import pytest
import torch

from benchmarks.common import load_config
from jreid.core import checkpoint
from jreid.errors import CheckpointMismatchError
from jreid.train import loop
from tests.convert.test_torch import Baseline, randomize


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """The smoke run (ResNet-18 of width 8) and one fresh state, shared: an init compiles ~15 s."""
  config = load_config("configs/baseline.py:smoke")
  config.data.root = str(tmp_path_factory.mktemp("data"))
  run = loop.prepare(config)
  fresh = run.fresh_state()
  return config, dataclasses.replace(run, fresh_state=lambda: fresh), jax.device_get(fresh)


def _save_imagenet_style(path, width=8):
  """A torchvision-style backbone file: bare ResNet names plus an ImageNet `fc` (ignored)."""
  backbone = randomize(Baseline("resnet18", width=width), seed=3).backbone.state_dict()
  imagenet_fc = {"fc.weight": torch.zeros(10, 8 * width), "fc.bias": torch.zeros(10)}
  torch.save({**backbone, **imagenet_fc}, path)
  return {k: v.numpy() for k, v in backbone.items() if not k.endswith("num_batches_tracked")}


def _jreid_leaf(state, name):
  """The jreid leaf a torchvision name should land in, spelled out here, not by jreid's."""
  path = re.sub(r"layer(\d)\.(\d)\.", r"layer\1_\2.", name)
  for index, module in (("0", "downsample_conv"), ("1", "downsample_bn")):
    path = path.replace(f"downsample.{index}.", f"{module}.")
  *modules, leaf = path.split(".")
  collection, leaf = {"running_mean": ("batch_stats", "mean"),
                      "running_var": ("batch_stats", "var"),
                      "bias": ("params", "bias")}.get(leaf, ("params", "weight"))
  node = getattr(state, collection)["backbone"]
  for module in modules:
    node = node[module]
  if leaf == "weight":
    leaf = "kernel" if "kernel" in node else "scale"
  return np.asarray(node[leaf])


def _initial_state(prepared, init_from, tmp_path):
  config, run, _ = prepared
  config = config.copy_and_resolve_references()
  config.init_from = str(init_from)
  lines = []
  state, data_state, _ = loop._initial_state(config, None, run, lines.append)  # a fresh workdir
  return state, data_state, lines


def test_backbone_comes_from_the_file_and_the_head_stays_initialised(tmp_path, prepared):
  weights = _save_imagenet_style(tmp_path / "r18_imagenet.pth")
  state, data_state, lines = _initial_state(prepared, tmp_path / "r18_imagenet.pth", tmp_path)
  fresh = prepared[2]
  for name, value in weights.items():
    expected = np.transpose(value, (2, 3, 1, 0)) if value.ndim == 4 else value  # OIHW -> HWIO
    assert np.array_equal(_jreid_leaf(state, name), expected), name
  assert not np.array_equal(fresh.params["backbone"]["conv1"]["kernel"],
                            state.params["backbone"]["conv1"]["kernel"])
  backbone_leaves = (jax.tree.leaves(state.params["backbone"])
                     + jax.tree.leaves(state.batch_stats["backbone"]))
  assert len(backbone_leaves) == len(weights)  # every backbone array came from the file
  for collection in ("params", "batch_stats"):
    for (path, kept), initial in zip(
        jax.tree_util.tree_flatten_with_path(getattr(state, collection)["head"])[0],
        jax.tree.leaves(getattr(fresh, collection)["head"])):
      assert np.array_equal(kept, initial), (collection, jax.tree_util.keystr(path))
  assert int(state.step) == 0 and data_state == {}
  assert jax.tree.structure(state) == jax.tree.structure(fresh)
  [line] = lines
  assert line.startswith(f"initialised {len(weights)} arrays from {tmp_path / 'r18_imagenet.pth'}")
  assert "4 left as initialised" in line  # the classifier and the neck's scale, mean, var
  assert "head/classifier/kernel" in line


def test_a_file_for_another_width_matches_nothing(tmp_path, prepared):
  _save_imagenet_style(tmp_path / "wide.pth", width=16)
  with pytest.raises(CheckpointMismatchError, match="wide.pth: none of its .* tensors fits"):
    _initial_state(prepared, tmp_path / "wide.pth", tmp_path)


def test_the_log_names_skipped_tensors_and_why(tmp_path, prepared):
  weights = _save_imagenet_style(tmp_path / "plain.pth")
  stored = {k: torch.from_numpy(v) for k, v in weights.items()}
  stored["heads.weight"] = torch.zeros(3, 64)  # a classifier for 3 identities
  stored["queue"] = torch.zeros(64, 16)  # MoCo's negatives: no such variable
  torch.save(stored, tmp_path / "with_head.pth")
  _, _, [line] = _initial_state(prepared, tmp_path / "with_head.pth", tmp_path)
  classes = prepared[2].params["head"]["classifier"]["kernel"].shape[-1]
  assert (f"; skipped 2: heads.weight (shape mismatch: (3, 64) vs model ({classes}, 64)), "
          "queue (not in the model);") in line
  assert "resized" not in line


def test_init_from_a_jreid_run_names_skipped_tensors_too(tmp_path, prepared):
  config, run, fresh = prepared
  params = jax.tree.map(np.asarray, fresh.params)
  params["head"]["classifier"]["kernel"] = np.zeros((64, 2), np.float32)
  params["extra"] = {"kernel": np.zeros((2,), np.float32)}
  ckpt = checkpoint.Checkpointer(tmp_path / "other" / "checkpoints")
  ckpt.save(0, fresh.replace(params=params), {})
  ckpt.wait()
  _, _, [line] = _initial_state(prepared, tmp_path / "other", tmp_path)
  classes = fresh.params["head"]["classifier"]["kernel"].shape[-1]
  assert (f"skipped 2: params/head/classifier/kernel (shape mismatch: (64, 2) vs model "
          f"(64, {classes})), params/extra/kernel (not in the model);") in line
