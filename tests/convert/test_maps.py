"""The weight-map registry and the generic loader's use of a family's map (resize, report)."""
import numpy as np
import pytest

from jreid.convert import load, maps, torch_names
from jreid.errors import CheckpointMismatchError


def test_a_backbone_name_resolves_to_its_family_map(jreid_model, jreid_variables):
  for name in ("resnet18", "resnet50", "resnext101"):
    assert maps.for_backbone(name) is maps.WEIGHT_MAPS["resnet"] is maps.RESNET
  assert maps.RESNET.jreid_keys is torch_names.jreid_keys
  with pytest.raises(CheckpointMismatchError, match="resnest50 .*ResNeSt.* has no PyTorch weight map"):
    maps.for_backbone("resnest50")
  flat = torch_names.flatten(jreid_variables(jreid_model("resnet18")))
  assert maps.resolve(flat) is maps.RESNET
  with pytest.raises(CheckpointMismatchError, match="no PyTorch weight map .unet."):
    maps.resolve(flat, "unet")


def _interpolate_tokens(key, array, shape):
  """A toy position-embedding resize: linear interpolation along the token axis."""
  if key != ("params", ("pos", "embedding")) or array.shape[2:] != shape[2:]:
    return None
  old = np.linspace(0, 1, array.shape[1])
  new = np.linspace(0, 1, shape[1])
  return np.stack([np.interp(new, old, array[0, :, c]) for c in range(shape[2])], -1)[None]


_NAMES = {"pos_embed": ("params", ("pos", "embedding")), "proj.weight": ("params", ("proj", "kernel")),
          "head.weight": ("params", ("head", "kernel"))}

TOY = maps.WeightMap(
    jreid_keys=lambda name, target: [k for k in [_NAMES.get(name)] if k in target],
    torch_name=lambda key: {v: k for k, v in _NAMES.items()}.get(key),
    claims=lambda target: ("params", ("pos", "embedding")) in target,
    resize=_interpolate_tokens)


def test_a_family_resize_hook_is_applied_and_reported(monkeypatch):
  monkeypatch.setitem(maps.WEIGHT_MAPS, "toy", TOY)
  variables = {"params": {"pos": {"embedding": np.zeros((1, 5, 2), np.float32)},
                          "proj": {"kernel": np.zeros((2, 3), np.float32)},
                          "head": {"kernel": np.zeros((2, 4), np.float32)}}}
  pos = np.array([[[0.0, 10.0], [2.0, 20.0], [4.0, 40.0]]], np.float32)  # 3 tokens -> 5
  proj = np.arange(6, dtype=np.float32).reshape(3, 2)  # torch (out, in) -> jreid (in, out)
  state = {"pos_embed": pos, "proj.weight": proj, "head.weight": np.zeros((7, 2), np.float32),
           "queue": np.zeros((4, 2), np.float32)}
  merged, report = load.merge_state_dict(variables, state)
  # Interpolation by hand: tokens at 0, .25, .5, .75, 1 between the 3 stored at 0, .5, 1.
  np.testing.assert_allclose(merged["params"]["pos"]["embedding"],
                             [[[0, 10], [1, 15], [2, 20], [3, 30], [4, 40]]])
  np.testing.assert_array_equal(merged["params"]["proj"]["kernel"], proj.T)
  np.testing.assert_array_equal(merged["params"]["head"]["kernel"], np.zeros((2, 4)))
  assert report.loaded == ["pos_embed", "proj.weight"]
  assert report.resized == [("pos_embed", (1, 3, 2), (1, 5, 2))]
  assert report.skipped == [("head.weight", "shape mismatch: (7, 2) vs model (4, 2)"),
                            ("queue", "not in the model")]
  assert report.missing == []  # the mismatched head is listed as skipped, not as missing
  assert load.resized_and_skipped(report) == (
      "; resized 1: pos_embed (1, 3, 2) -> (1, 5, 2); skipped 2: head.weight (shape mismatch: "
      "(7, 2) vs model (4, 2)), queue (not in the model)")


def test_without_a_resize_hook_another_shape_is_skipped_by_name(jreid_model, jreid_variables):
  variables = jreid_variables(jreid_model("resnet18"))
  state, _ = torch_names.to_state_dict(variables)
  state["heads.weight"] = np.zeros((9, 64), np.float32)
  state["encoder_k.conv1.weight"] = np.zeros((8, 3, 7, 7), np.float32)
  _, report = load.merge_state_dict(variables, state)
  assert report.resized == []
  assert report.skipped == [("heads.weight", "shape mismatch: (9, 64) vs model (5, 64)"),
                            ("encoder_k.conv1.weight", "not in the model")]
  assert load.resized_and_skipped(report, limit=1) == (
      "; skipped 2: heads.weight (shape mismatch: (9, 64) vs model (5, 64)) (+1 more)")
  assert load.resized_and_skipped(load.LoadReport(loaded=["conv1.weight"])) == ""
