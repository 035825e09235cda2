"""Wrong ViT weight files through `jreid.main --config.init_from=...`: one error line naming the
file and the expected and found shapes, and no workdir written.

The model is `configs/vit.py:smoke`'s (an ICS ViT, 16 wide, 4x2 tokens at 32x16).
"""
import numpy as np
import pytest
from safetensors.numpy import save_file

from jreid.convert import export, maps
from tests.bad_inputs.conftest import cli, error_line

SMOKE = dict(size=(32, 16), patch_size=8, stride=8, stem_channels=8)


def clip_file(vit_variables, path):
  _, clip = vit_variables("clip_vit_b16", size=(32, 16), patch_size=8, stride=8)
  export.export_variables(clip, path)


def wider_file(vit_variables, path):  # as a ViT-B file is to a ViT-S config
  _, wide = vit_variables("vit_small_ics", embed_dim=32, num_heads=4, **SMOKE)
  export.export_variables(wide, path)


def odd_grid_file(vit_variables, path):  # the smoke model's own weights, 6 patch tokens
  _, own = vit_variables("vit_small_ics", **SMOKE)
  state, _ = maps.VIT.to_state_dict(own, "timm")
  state["pos_embed"] = np.zeros((1, 7, 16), np.float32)
  save_file(state, str(path))


CASES = {
    "clip_file_for_an_ics_vit": (clip_file, ["none of its 32 tensors fits this model",
                                             "expected e.g. blocks.0.attn.proj.bias (16,)",
                                             "found e.g. visual.class_embedding (16,)"]),
    "wider_vit_file": (wider_file, ["blocks.0.attn.proj.bias is (32,) in the file, but this "
                                    "model's blocks.0.attn.proj.bias is (16,)"]),
    "grid_not_resizable": (odd_grid_file, ["pos_embed: its position embedding has 6 patch tokens, "
                                           "which is not a square grid",
                                           "expected 8 tokens of width 16, found 6"]),
}


@pytest.mark.parametrize("case", CASES)
def test_a_wrong_vit_weights_file_is_one_line(case, tmp_path, synth_root, vit_variables):
  make, expected = CASES[case]
  weights = tmp_path / f"{case}.safetensors"
  make(vit_variables, weights)
  workdir = tmp_path / "run"
  line = error_line(cli("jreid.main", ["--config=configs/vit.py:smoke", f"--workdir={workdir}",
                                       f"--config.data.root={synth_root}",
                                       f"--config.init_from={weights}"]))
  assert str(weights) in line
  for part in expected:
    assert part in line
  assert not workdir.exists()
