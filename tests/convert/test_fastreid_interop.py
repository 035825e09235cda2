"""jreid's .pth exports load where FastReID and torchvision-named models load weights.

FastReID's `MODEL.WEIGHTS=... --eval-only` goes through its `Checkpointer`,
fvcore's, whose `_load_model` does `checkpoint.pop("model")`: here the real
fvcore Checkpointer loads the "fastreid" export into a torch model with
FastReID's Baseline names (`benchmarks/torch_resnet.py`: `backbone.*`,
`heads.bottleneck.0`, `heads.weight`). A state dict that carries torch's
version metadata (every `module.state_dict()` does) loads strictly only with
each BN's `num_batches_tracked`, which the exports therefore write.
"""
import collections
import logging

import numpy as np
import pytest
import torch
from fvcore.common.checkpoint import Checkpointer
from safetensors.numpy import load_file

from benchmarks import torch_resnet
from jreid.convert import export, load
from tests.convert.test_torch import NUM_CLASSES, images, jreid_features

torch.set_num_threads(1)
TOL = 1e-4


class RecordingCheckpointer(Checkpointer):
  """fvcore's Checkpointer, keeping the incompatible keys it would only log."""

  def _log_incompatible_keys(self, incompatible):
    self.incompatible = incompatible
    super()._log_incompatible_keys(incompatible)


def test_fvcore_checkpointer_loads_the_fastreid_export_with_no_key_left_over(
    tmp_path, jreid_model, jreid_variables):
  model = jreid_model("resnet50", ibn=True, gem=False)
  variables = jreid_variables(model, seed=6)
  out = export.export_variables(variables, tmp_path / "model_final.pth", layout="fastreid").out
  content = torch.load(out, weights_only=True)
  assert list(content) == ["model"]
  counters = [k for k in content["model"] if k.endswith("num_batches_tracked")]
  assert "heads.bottleneck.0.num_batches_tracked" in counters
  assert "backbone.layer1.0.bn1.BN.num_batches_tracked" in counters  # IBN-a's BN half
  assert all(content["model"][k].dtype == torch.int64 and content["model"][k].ndim == 0
             for k in counters)

  torch_model = torch_resnet.Baseline("resnet50", width=8, ibn=True, num_classes=NUM_CLASSES)
  checkpointer = RecordingCheckpointer(torch_model, save_dir=str(tmp_path))
  logging.getLogger("fvcore").setLevel(logging.ERROR)
  assert checkpointer.load(str(out)) == {}  # nothing but "model" in the file
  keys = checkpointer.incompatible
  assert keys.missing_keys == [] and keys.unexpected_keys == [] and keys.incorrect_shapes == []
  assert sorted(content["model"]) == sorted(torch_model.state_dict())

  x = images(seed=7)
  with torch.no_grad():
    neck, pooled, _ = (t.numpy() for t in torch_model.eval()(torch.from_numpy(x)))
  jneck, jpooled = jreid_features(model, variables, x)
  print(f"fvcore-loaded FastReID Baseline: max |neck diff| {np.abs(neck - jneck).max():.2e}")
  assert np.abs(pooled - jpooled).max() <= TOL and np.abs(neck - jneck).max() <= TOL

  # jreid reads its own export back: the "model" key unwrapped, the counters skipped (and the
  # zero neck bias FastReID's BN needs, where jreid's neck has none).
  back, report = load.load_torch_weights(out, variables)
  assert report.missing == [] and report.unused == [] and report.mismatched == []
  assert sorted(report.ignored) == sorted(counters + ["heads.bottleneck.0.bias"])
  assert np.array_equal(back["batch_stats"]["head"]["neck"]["var"],
                        np.asarray(variables["batch_stats"]["head"]["neck"]["var"]))


def test_the_torchvision_export_loads_strictly_with_version_metadata(
    tmp_path, jreid_model, jreid_variables):
  # torchvision's stem pool (padding 1, floor), which a torchvision ResNet has.
  model = jreid_model("resnet18", ceil_mode_pool=False)
  variables = jreid_variables(model, seed=8)
  out = export.export_variables(variables, tmp_path / "resnet18.pth", layout="torchvision").out
  state = torch.load(out, weights_only=True)
  assert "bn1.num_batches_tracked" in state and not any(k.startswith("heads.") for k in state)

  target = torch_resnet.TorchResNet("resnet18", width=8, ceil_mode_pool=False)
  versioned = collections.OrderedDict(state)
  versioned._metadata = target.state_dict()._metadata  # as a module's own state_dict() carries
  target.load_state_dict(versioned, strict=True)
  without = collections.OrderedDict((k, v) for k, v in state.items()
                                    if not k.endswith("num_batches_tracked"))
  without._metadata = versioned._metadata
  with pytest.raises(RuntimeError, match=r"Missing key\(s\).*bn1\.num_batches_tracked"):
    torch_resnet.TorchResNet("resnet18", width=8, ceil_mode_pool=False).load_state_dict(without)

  x = images(seed=9)
  with torch.no_grad():
    layer4 = target.eval()(torch.from_numpy(x)).numpy()
  _, intermediates = model.apply(variables, np.transpose(x, (0, 2, 3, 1)), train=False)
  jlayer4 = np.transpose(np.asarray(intermediates["layer4"]), (0, 3, 1, 2))
  assert np.abs(layer4 - jlayer4).max() <= TOL


def test_safetensors_stay_flat_and_round_trip(tmp_path, jreid_model, jreid_variables):
  model = jreid_model("resnet18")
  variables = jreid_variables(model, seed=10)
  out = export.export_variables(variables, tmp_path / "m.safetensors", layout="fastreid").out
  flat = load_file(str(out))
  assert "backbone.conv1.weight" in flat and "model" not in flat
  assert flat["backbone.bn1.num_batches_tracked"].dtype == np.int64
  back, report = load.load_torch_weights(out, variables)
  assert report.missing == [] and report.unused == []
  assert "backbone.bn1.num_batches_tracked" in report.ignored
  assert np.array_equal(back["params"]["backbone"]["conv1"]["kernel"],
                        np.asarray(variables["params"]["backbone"]["conv1"]["kernel"]))
