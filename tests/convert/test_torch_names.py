"""The jreid <-> torch name map and the merge report, without torch."""
import numpy as np
import pytest

from jreid.convert import load, torch_names
from jreid.errors import CheckpointMismatchError


@pytest.mark.parametrize("backbone,ibn,gem", [("resnet50", True, True), ("resnet18", False, False)])
def test_every_variable_has_a_torch_name_and_maps_back(jreid_model, jreid_variables, backbone, ibn, gem):
  variables = jreid_variables(jreid_model(backbone, ibn=ibn, neck_bias=True, gem=gem))
  flat = torch_names.flatten(variables)
  names = {key: torch_names.torch_name(key) for key in flat}
  assert None not in names.values()
  assert len(set(names.values())) == len(flat)
  assert all(torch_names.jreid_key(name) == key for key, name in names.items())


def test_names_follow_torchvision_and_fastreid():
  cases = {
      ("params", ("backbone", "conv1", "kernel")): "conv1.weight",
      ("params", ("backbone", "bn1", "scale")): "bn1.weight",
      ("batch_stats", ("backbone", "layer2_0", "downsample_bn", "var")): "layer2.0.downsample.1.running_var",
      ("params", ("backbone", "layer2_0", "downsample_conv", "kernel")): "layer2.0.downsample.0.weight",
      ("params", ("backbone", "layer3_5", "bn1", "IN", "scale")): "layer3.5.bn1.IN.weight",
      ("batch_stats", ("backbone", "layer1_1", "bn1", "BN", "mean")): "layer1.1.bn1.BN.running_mean",
      ("params", ("head", "neck", "scale")): "heads.bottleneck.0.weight",
      ("batch_stats", ("head", "neck", "mean")): "heads.bottleneck.0.running_mean",
      ("params", ("head", "classifier", "kernel")): "heads.weight",
      ("params", ("pooling", "p")): "heads.pool_layer.p",
  }
  for key, name in cases.items():
    assert torch_names.torch_name(key) == name
    assert torch_names.jreid_key(name) == key
  assert torch_names.jreid_key("heads.classifier.weight") == ("params", ("head", "classifier", "kernel"))
  for unknown in ("fc.weight", "layer1.0.se.fc.weight", "heads.bnneck.weight", "layer1.weight",
                  "conv1.num_batches_tracked"):
    assert torch_names.jreid_key(unknown) is None
  assert torch_names.torch_name(("params", ("projector", "dense", "kernel"))) is None


def test_layouts_transpose_kernels_and_invert():
  rng = np.random.default_rng(0)
  conv = rng.normal(size=(7, 5, 3, 8)).astype(np.float32)  # HWIO
  torch_conv = torch_names.to_torch_layout(("conv1", "kernel"), conv)
  assert torch_conv.shape == (8, 3, 7, 5)
  assert torch_conv[6, 2, 4, 1] == conv[4, 1, 2, 6]
  dense = rng.normal(size=(16, 5)).astype(np.float32)  # (C, K)
  assert torch_names.to_torch_layout(("classifier", "kernel"), dense).shape == (5, 16)
  for path, value in ((("conv1", "kernel"), conv), (("classifier", "kernel"), dense),
                      (("bn1", "scale"), dense[0])):
    back = torch_names.from_torch_layout(path, torch_names.to_torch_layout(path, value))
    assert np.array_equal(back, value)


def test_state_dict_layouts(jreid_model, jreid_variables):
  variables = jreid_variables(jreid_model("resnet18"))
  fastreid, skipped = torch_names.to_state_dict(variables, "fastreid")
  assert skipped == []
  assert "backbone.layer4.1.bn2.running_var" in fastreid and fastreid["heads.weight"].shape == (5, 64)
  assert np.array_equal(fastreid["heads.bottleneck.0.bias"], np.zeros(64))  # BoT's frozen zero bias
  bare, skipped = torch_names.to_state_dict(variables, "torchvision")
  assert "conv1.weight" in bare and not any(n.startswith(("heads.", "backbone.")) for n in bare)
  assert "params/head/classifier/kernel" in skipped
  with pytest.raises(ValueError, match="layout"):
    torch_names.to_state_dict(variables, "timm")


def test_merge_reports_loaded_missing_unused_and_mismatched(jreid_model, jreid_variables):
  target = jreid_variables(jreid_model("resnet18"), seed=0)
  source = jreid_variables(jreid_model("resnet18"), seed=1)
  state, _ = torch_names.to_state_dict(source, "fastreid")
  state = {"module." + name: value for name, value in state.items()}
  state["module.heads.weight"] = np.zeros((7, 64), np.float32)  # another number of identities
  del state["module.backbone.layer1.0.conv1.weight"]
  state["module.backbone.layer1.0.bn1.num_batches_tracked"] = np.array(3)
  state["module.backbone.fc.weight"] = np.zeros((10, 64), np.float32)
  state["module.backbone.layer1.0.se.weight"] = np.zeros(3, np.float32)
  merged, report = load.merge_state_dict(target, state)
  assert report.missing == ["params/backbone/layer1_0/conv1/kernel"]
  assert report.unused == ["module.backbone.layer1.0.se.weight"]
  assert report.mismatched == [("module.heads.weight", (7, 64), (5, 64))]
  assert sorted(report.ignored) == ["module.backbone.fc.weight",
                                    "module.backbone.layer1.0.bn1.num_batches_tracked",
                                    "module.heads.bottleneck.0.bias"]
  assert len(report.loaded) == len(torch_names.flatten(target)) - 2
  assert np.array_equal(merged["params"]["backbone"]["layer2_0"]["conv2"]["kernel"],
                        source["params"]["backbone"]["layer2_0"]["conv2"]["kernel"])
  assert np.array_equal(merged["params"]["head"]["classifier"]["kernel"],
                        target["params"]["head"]["classifier"]["kernel"])
  assert "1 missing from the file" in report.summary()


def test_nonzero_neck_bias_without_a_model_bias_is_reported_unused(jreid_model, jreid_variables):
  variables = jreid_variables(jreid_model("resnet18"))
  state, _ = torch_names.to_state_dict(variables)
  state["heads.bottleneck.0.bias"] = np.ones(64, np.float32)
  _, report = load.merge_state_dict(variables, state)
  assert report.unused == ["heads.bottleneck.0.bias"]


def test_a_state_dict_that_fits_nothing_is_an_error(jreid_model, jreid_variables):
  target = jreid_variables(jreid_model("resnet18", width=8))
  wider, _ = torch_names.to_state_dict(jreid_variables(jreid_model("resnet18", width=16)))
  with pytest.raises(CheckpointMismatchError, match="none of its .* tensors fits this model.*shapes differ"):
    load.merge_state_dict(target, wider, source="wide.pth")
  with pytest.raises(CheckpointMismatchError, match="fits this model.*blocks.0.attn"):
    load.merge_state_dict(target, {"blocks.0.attn.qkv.weight": np.zeros((3, 3))})
  with pytest.raises(CheckpointMismatchError, match="both map to conv1.weight"):
    load.merge_state_dict(target, {"module.conv1.weight": np.zeros(1), "conv1.weight": np.zeros(1)})


def test_strip_prefixes():
  assert load.strip_prefixes("module.encoder_q.layer1.0.conv1.weight") == "layer1.0.conv1.weight"
  assert load.strip_prefixes("module.backbone.bn1.weight") == "bn1.weight"
  assert load.strip_prefixes("base.conv1.weight") == "conv1.weight"
  assert load.strip_prefixes("module.heads.weight") == "heads.weight"
  assert load.strip_prefixes("encoder_k.conv1.weight") == "encoder_k.conv1.weight"


def test_resnest_is_refused_rather_than_misnamed():
  variables = {"params": {"backbone": {"conv1_0": {"kernel": np.zeros((3, 3, 3, 4))},
                                       "layer1_0": {"downsample_conv": {"kernel": np.zeros((1, 1, 4, 4))}}}}}
  with pytest.raises(CheckpointMismatchError, match="ResNeSt"):
    torch_names.to_state_dict(variables)


def test_a_plain_resnet_file_fills_the_mgn_trunk_and_all_three_branches(jreid_model, jreid_variables):
  from jreid.models.reid import build_model, model_config
  plain = jreid_variables(jreid_model("resnet18", ibn=True), seed=1)
  state_dict, _ = torch_names.to_state_dict(plain, "torchvision")
  config = model_config("mgn", "resnet18")
  config.backbone.update(width=8, ibn="a")
  mgn = jreid_variables(build_model(config, 5), seed=2)
  merged, report = load.merge_state_dict(mgn, state_dict)
  backbone = plain["params"]["backbone"]
  for branch in ("b1", "b2", "b3"):
    for block in ("layer3_1", "layer4_0", "layer4_1"):
      np.testing.assert_array_equal(merged["params"][branch][block]["conv1"]["kernel"],
                                    backbone[block]["conv1"]["kernel"])
      np.testing.assert_array_equal(merged["batch_stats"][branch][block]["bn2"]["var"],
                                    plain["batch_stats"]["backbone"][block]["bn2"]["var"])
  np.testing.assert_array_equal(merged["params"]["backbone"]["layer3_0"]["conv1"]["kernel"],
                                backbone["layer3_0"]["conv1"]["kernel"])
  assert report.unused == [] and report.mismatched == []
  # Only the eight heads (neck BNs and classifiers) stay as initialised.
  assert report.missing and all(name.split("/")[1].endswith("_head") for name in report.missing)
