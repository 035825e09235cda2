"""Conversion against a PyTorch ResNet(-IBN-a) written from the papers' description.

The torch model (`benchmarks/torch_resnet.py`, shared with the train-step
benchmark) is independent of jreid's: torchvision layout (stride on the 3x3
of a Bottleneck, 1x1 conv + BN shortcut), IBN-a with an affine InstanceNorm
on the first half of the channels and BN on the rest, and a FastReID-style
head (`heads.bottleneck.0` BN, `heads.weight` classifier).
"""
import jax
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file
from torch import nn

from benchmarks import torch_resnet
from jreid.convert import export, load, torch_names
from jreid.core.checkpoint import Checkpointer
from jreid.core.state import TrainState
from jreid.errors import CheckpointMismatchError, WeightsFileError
from jreid.tools import export as export_tool

torch.set_num_threads(1)
IMAGE = (64, 32)  # H, W of the test images
NUM_CLASSES = 5  # as conftest.make_model builds its head


def Baseline(name, width=8, **options):
  """The reference BoT model at the test width, with this file's class count."""
  return torch_resnet.Baseline(name, width=width, num_classes=NUM_CLASSES, **options)


def randomize(model, seed=0, neck_bias=True):
  """Random affine parameters and running statistics (convs keep torch's init); eval mode."""
  generator = torch.Generator().manual_seed(seed)

  def uniform(t, low, high):
    t.copy_(torch.rand(t.shape, generator=generator) * (high - low) + low)

  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d)):
        uniform(module.weight, 0.5, 1.5)
        uniform(module.bias, -0.2, 0.2)
      if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        uniform(module.running_mean, -0.2, 0.2)
        uniform(module.running_var, 0.5, 1.5)
    model.heads.weight.copy_(torch.randn(model.heads.weight.shape, generator=generator) * 0.01)
    if not neck_bias:
      model.heads.bottleneck[0].bias.zero_()
  return model.eval()


def state_arrays(model):
  return {k: v.numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def jreid_features(model, variables, images):
  feature, parts = model.apply(variables, np.transpose(images, (0, 2, 3, 1)), train=False)
  return np.asarray(feature), np.asarray(parts["pre_neck"])


def images(seed=0, batch=2):
  return np.random.default_rng(seed).normal(size=(batch, 3, *IMAGE)).astype(np.float32)


@pytest.mark.parametrize("name,ibn,ceil_mode_pool", [
    ("resnet50", False, True), ("resnet50", True, False), ("resnet18", True, True)])
def test_exported_weights_give_the_same_features_in_torch(jreid_model, jreid_variables,
                                                          name, ibn, ceil_mode_pool):
  model = jreid_model(name, ibn=ibn, ceil_mode_pool=ceil_mode_pool)
  variables = jreid_variables(model, seed=1)
  state, skipped = torch_names.to_state_dict(variables, "fastreid")
  assert skipped == []
  torch_model = Baseline(name, ibn=ibn, ceil_mode_pool=ceil_mode_pool)
  torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
  missing = [k for k in torch_model.state_dict() if k not in state]
  assert all(k.endswith("num_batches_tracked") for k in missing)
  x = images()
  with torch.no_grad():
    neck, pooled, _ = (t.numpy() for t in torch_model.eval()(torch.from_numpy(x)))
  jneck, jpooled = jreid_features(model, variables, x)
  print(f"{name} ibn={ibn} ceil={ceil_mode_pool}: max |neck diff| {np.abs(neck - jneck).max():.2e}, "
        f"max |neck| {np.abs(neck).max():.2f}")
  assert np.abs(pooled - jpooled).max() < 1e-4
  assert np.abs(neck - jneck).max() < 1e-4


def test_torch_to_jreid_to_torch_is_exact_and_features_match(jreid_model, jreid_variables):
  torch_model = randomize(Baseline("resnet50", ibn=True), seed=2)
  model = jreid_model("resnet50", ibn=True, neck_bias=True)
  variables, report = load.merge_state_dict(jreid_variables(model), state_arrays(torch_model))
  assert report.missing == [] and report.unused == [] and report.mismatched == []
  again, _ = torch_names.to_state_dict(variables, "fastreid")
  original = state_arrays(torch_model)
  assert sorted(again) == sorted(original)
  for name, value in original.items():
    assert again[name].dtype == value.dtype and np.array_equal(again[name], value), name
  x = images(seed=3)
  with torch.no_grad():
    neck, _, _ = torch_model(torch.from_numpy(x))
  jneck, _ = jreid_features(model, variables, x)
  print(f"torch -> jreid resnet50-ibn: max |neck diff| {np.abs(neck.numpy() - jneck).max():.2e}, "
        f"max |neck| {np.abs(jneck).max():.2f}")
  assert np.abs(neck.numpy() - jneck).max() < 1e-4


class NotATensor:
  """Pickled by reference: `torch.load(weights_only=True)` must refuse to build it."""


def _tensors(arrays, prefix):
  return {prefix + k: torch.from_numpy(v) for k, v in arrays.items()}


def test_reads_pth_nested_pth_tar_and_safetensors_with_prefixes(tmp_path, jreid_model, jreid_variables):
  torch_model = randomize(Baseline("resnet18"), seed=4, neck_bias=False)
  backbone = {k: v.numpy() for k, v in torch_model.backbone.state_dict().items()}
  target = jreid_variables(jreid_model("resnet18"))
  expected_conv = np.transpose(backbone["layer2.0.conv1.weight"], (2, 3, 1, 0))

  # DataParallel-wrapped FastReID model: everything loads (the zero neck bias is ignored).
  torch.save(_tensors(state_arrays(torch_model), "module."), tmp_path / "dp.pth")
  # MoCo / LUPerson: nested under state_dict, encoder_q. prefix, fc head, and a key encoder.
  moco = {**_tensors(backbone, "module.encoder_q."),
          "module.encoder_q.fc.0.weight": torch.zeros(4, 64),
          "module.encoder_k.conv1.weight": torch.zeros(8, 3, 7, 7), "module.queue": torch.zeros(4, 8)}
  torch.save({"epoch": 3, "arch": "resnet18", "state_dict": moco, "optimizer": {"state": {}}},
             tmp_path / "moco.pth.tar")
  # FastReID training checkpoint: nested under model; the classifier is for other identities.
  fastreid = {**_tensors(state_arrays(torch_model), ""), "heads.weight": torch.zeros(9, 64)}
  torch.save({"model": fastreid, "iteration": 10}, tmp_path / "model_final.pth")
  save_file({"base." + k: v for k, v in backbone.items()}, str(tmp_path / "bare.safetensors"))

  _, report = load.load_torch_weights(tmp_path / "dp.pth", target)
  assert report.missing == [] and report.unused == [] and report.mismatched == []
  variables, report = load.load_torch_weights(tmp_path / "moco.pth.tar", target)
  assert sorted(report.unused) == ["module.encoder_k.conv1.weight", "module.queue"]
  assert "module.encoder_q.fc.0.weight" in report.ignored
  assert sorted(report.missing) == ["batch_stats/head/neck/mean", "batch_stats/head/neck/var",
                                    "params/head/classifier/kernel", "params/head/neck/scale"]
  assert np.array_equal(variables["params"]["backbone"]["layer2_0"]["conv1"]["kernel"], expected_conv)
  _, report = load.load_torch_weights(tmp_path / "model_final.pth", target)
  assert report.mismatched == [("heads.weight", (9, 64), (NUM_CLASSES, 64))]
  assert report.missing == []  # the classifier is listed as mismatched, not twice
  variables, report = load.load_torch_weights(tmp_path / "bare.safetensors", target)
  assert len(report.loaded) == len(backbone) - sum(k.endswith("num_batches_tracked") for k in backbone)
  assert np.array_equal(variables["batch_stats"]["backbone"]["bn1"]["var"], backbone["bn1.running_var"])


def test_unreadable_files_give_clear_errors(tmp_path, jreid_model, jreid_variables):
  target = jreid_variables(jreid_model("resnet18"))
  with pytest.raises(WeightsFileError, match="no weights file at .*absent.pth"):
    load.load_torch_weights(tmp_path / "absent.pth", target)
  (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
  with pytest.raises(WeightsFileError, match="cannot read .*junk.pth as PyTorch weights"):
    load.load_torch_weights(tmp_path / "junk.pth", target)
  (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
  with pytest.raises(WeightsFileError, match="cannot read .*junk.safetensors as safetensors"):
    load.load_torch_weights(tmp_path / "junk.safetensors", target)
  torch.save({"conv1.weight": torch.zeros(1), "hook": NotATensor()}, tmp_path / "pickled.pth")
  with pytest.raises(WeightsFileError, match="weights_only=True"):
    load.load_torch_weights(tmp_path / "pickled.pth", target)
  torch.save({"epoch": 3}, tmp_path / "empty.pth")
  with pytest.raises(WeightsFileError, match="holds no tensors"):
    load.load_torch_weights(tmp_path / "empty.pth", target)
  torch.save(Baseline("resnet18", width=16).state_dict(), tmp_path / "wide.pth")
  with pytest.raises(CheckpointMismatchError, match="wide.pth: none of its .* tensors fits this model"):
    load.load_torch_weights(tmp_path / "wide.pth", target)


def test_export_cli_writes_pth_and_safetensors(tmp_path, capsys, jreid_model, jreid_variables):
  variables = jreid_variables(jreid_model("resnet18"), seed=5)
  params = jax.tree.map(np.asarray, variables["params"])
  state = TrainState(step=np.int32(7), params=params, batch_stats=variables["batch_stats"],
                     opt_state=(jax.tree.map(np.zeros_like, params),))
  checkpointer = Checkpointer(tmp_path / "run" / "checkpoints")
  checkpointer.save(7, state, {"next_index": 0})
  checkpointer.wait()
  checkpointer.close()

  assert export_tool.main(["--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "out" / "m.pth")]) == 0
  expected = export.with_bn_counters(torch_names.to_state_dict(variables, "fastreid")[0])
  assert f"wrote {len(expected)} tensors" in capsys.readouterr().out
  written = torch.load(tmp_path / "out" / "m.pth", weights_only=True)["model"]  # FastReID's nesting
  assert sorted(written) == sorted(expected)
  assert all(np.array_equal(written[k].numpy(), v) for k, v in expected.items())
  torch_model = Baseline("resnet18")
  torch_model.load_state_dict(written, strict=False)

  out = tmp_path / "out" / "bare.safetensors"
  assert export_tool.main(["--checkpoint", str(tmp_path / "run" / "checkpoints"), "--out", str(out),
                           "--layout", "torchvision", "--step", "7"]) == 0
  assert "not exported (no PyTorch name): params/head" in capsys.readouterr().out
  variables_back, report = load.load_torch_weights(out, variables)
  assert all(m.startswith(("params/head", "batch_stats/head")) for m in report.missing)
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bare.safetensors", "m.pth"]

  assert export_tool.main(["--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "m.bin")]) == 1
  assert "cannot tell the format" in capsys.readouterr().err
  assert export_tool.main(["--checkpoint", str(tmp_path / "run"), "--out", str(out), "--step", "3"]) == 1
  assert "no step 3" in capsys.readouterr().err
  assert export_tool.main(["--checkpoint", str(tmp_path / "nothing"), "--out", str(out)]) == 1
  assert "no checkpoint folder" in capsys.readouterr().err


# --- Values that cannot be weights: refused by name, before they reach the model ----------------

def _bad_backbone(seed=4):
  torch_model = randomize(Baseline("resnet18"), seed=seed, neck_bias=False)
  return {k: v.numpy().copy() for k, v in torch_model.backbone.state_dict().items()}


def _save(tmp_path, arrays, suffix):
  path = tmp_path / f"weights{suffix}"
  if suffix == ".safetensors":
    save_file(arrays, str(path))
  else:
    torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path)
  return path


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("name,damage,why", [
    ("layer1.0.conv1.weight", lambda v: v.astype(np.int32), r"is int32, but the model's "
     r"params/backbone/layer1_0/conv1/kernel is float32"),
    ("bn1.weight", lambda v: v > 0.7, r"bn1.weight is bool, but the model's params/backbone/bn1/scale"),
    ("layer2.0.bn2.bias", lambda v: np.where(np.arange(v.size) == 3, np.nan, v).astype(np.float32),
     r"layer2.0.bn2.bias \(the model's params/backbone/layer2_0/bn2/bias\) holds 1 NaN/inf values"),
    ("conv1.weight", lambda v: np.full_like(v, np.inf), r"conv1.weight .* holds 1176 NaN/inf values"),
    ("bn1.running_var", lambda v: -v, r"bn1.running_var \(BatchNorm running variance, the model's "
     r"batch_stats/backbone/bn1/var\) has 8 negative values"),
])
def test_tensors_that_cannot_be_weights_are_refused(tmp_path, jreid_model, jreid_variables,
                                                    suffix, name, damage, why):
  arrays = _bad_backbone()
  arrays[name] = damage(arrays[name])
  path = _save(tmp_path, arrays, suffix)
  with pytest.raises(WeightsFileError, match=why) as err:
    load.load_torch_weights(path, jreid_variables(jreid_model("resnet18")))
  assert str(err.value).startswith(f"{path}: tensor {name} ")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_integer_buffers_the_model_does_not_use_are_still_skipped(tmp_path, jreid_model,
                                                                 jreid_variables, suffix):
  arrays = _bad_backbone()
  assert arrays["bn1.num_batches_tracked"].dtype == np.int64  # PyTorch's own integer buffer
  arrays["extra.mask"] = np.ones(3, bool)                      # a name the model has no slot for
  arrays["bn1.running_var"][0] = 0.0                           # zero variance is a variance
  variables, report = load.load_torch_weights(_save(tmp_path, arrays, suffix),
                                              jreid_variables(jreid_model("resnet18")))
  assert "bn1.num_batches_tracked" in report.ignored and report.unused == ["extra.mask"]
  assert np.array_equal(variables["batch_stats"]["backbone"]["bn1"]["var"], arrays["bn1.running_var"])
  assert np.array_equal(variables["params"]["backbone"]["bn1"]["scale"], arrays["bn1.weight"])
