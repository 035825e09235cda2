"""ViT / CLIP weight files in the layouts users have: names, resizing, round trips and wrong files.

Files are written here with safetensors from state dicts built by hand (the
PyTorch parity is in test_vit_torch.py; wrong files through `jreid.main` in
tests/bad_inputs/test_vit_weight_files.py); every case reads them through
`jreid.convert.load`, as `config.init_from` does.
"""
import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from jreid.convert import export, load, maps, torch_names
from jreid.core.resize import resize_grid
from jreid.errors import CheckpointMismatchError

DIM, DEPTH = 16, 2  # conftest.random_vit_variables' tiny ViTs


def leaves_equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("name, layout", [("vit_small", "timm"), ("vit_small", "transreid"),
                                          ("vit_small_ics", "timm"), ("vit_small_ics", "transreid"),
                                          ("clip_vit_b16", "openai")])
def test_export_then_import_is_exact(tmp_path, name, layout, vit_variables):
  _, variables = vit_variables(name)
  out = tmp_path / f"{name}.safetensors"
  result = export.export_variables(variables, out, layout=layout)
  assert result.layout == layout
  _, blank = vit_variables(name, seed=1)
  merged, report = load.load_torch_weights(out, blank)
  with_head = layout == "transreid"
  expected = variables if with_head else {
      c: {**variables[c], "head": blank[c]["head"]} for c in variables}
  assert leaves_equal(merged, expected)
  assert report.unused == [] and report.resized == [] and report.mismatched == []
  assert all(m.startswith(("params/head", "batch_stats/head")) for m in report.missing)
  assert bool(report.missing) != with_head


def test_timm_and_openai_names_and_shapes(vit_variables):
  _, vit = vit_variables("vit_small_ics")
  state, _ = maps.VIT.to_state_dict(vit, "timm")
  grid = 4 * 2  # 64x32 with patch 16
  assert state["pos_embed"].shape == (1, 1 + grid, DIM) and state["cls_token"].shape == (1, 1, DIM)
  assert state["patch_embed.conv.0.weight"].shape == (64, 3, 7, 7)
  assert state["patch_embed.conv.1.IN.weight"].shape == (32,)
  assert state["patch_embed.conv.4.BN.running_var"].shape == (32,)
  assert state["patch_embed.conv.7.running_mean"].shape == (64,)
  assert state["patch_embed.proj.weight"].shape == (DIM, 64, 8, 8)
  assert state["blocks.1.attn.qkv.weight"].shape == (3 * DIM, DIM)
  np.testing.assert_array_equal(state["blocks.1.attn.qkv.weight"],
                                vit["params"]["backbone"]["blocks_1"]["attn"]["qkv"]["kernel"].T)
  # The CLS row first, then the grid row-major.
  np.testing.assert_array_equal(state["pos_embed"][0, 1:].reshape(4, 2, DIM),
                                vit["params"]["backbone"]["pos_embed"])
  _, clip = vit_variables("clip_vit_b16")
  state, _ = maps.CLIP.to_state_dict(clip, "openai")
  assert state["visual.class_embedding"].shape == (DIM,)
  assert state["visual.positional_embedding"].shape == (1 + grid, DIM)
  assert state["visual.proj"].shape == (DIM, 8)  # (width, output_dim): no transpose
  np.testing.assert_array_equal(state["visual.proj"], clip["params"]["backbone"]["proj"])
  assert state["visual.transformer.resblocks.0.attn.in_proj_weight"].shape == (3 * DIM, DIM)
  assert "visual.conv1.bias" not in state and state["visual.ln_pre.weight"].shape == (DIM,)


def _square_checkpoint(vit_variables, name, side, tmp_path):
  """The model's own export with its position grid replaced by a random side x side one."""
  _, variables = vit_variables(name)
  weight_map = maps.WEIGHT_MAPS["clip" if name.startswith("clip") else "vit"]
  state, _ = weight_map.to_state_dict(variables, weight_map.layouts[0])
  key = "visual.positional_embedding" if name.startswith("clip") else "pos_embed"
  grid = np.random.default_rng(5).normal(size=(side, side, DIM)).astype(np.float32)
  rows = np.concatenate([state[key].reshape(-1, DIM)[:1], grid.reshape(-1, DIM)])
  state[key] = rows[None] if key == "pos_embed" else rows
  path = tmp_path / "square.safetensors"
  save_file(state, str(path))
  return path, grid, variables


@pytest.mark.parametrize("name, method", [("vit_small", "bicubic"), ("clip_vit_b16", "bilinear")])
def test_a_square_grid_is_resized_to_the_models_and_reported(tmp_path, name, method, vit_variables):
  path, grid, variables = _square_checkpoint(vit_variables, name, 3, tmp_path)
  merged, report = load.load_torch_weights(path, variables)
  np.testing.assert_allclose(merged["params"]["backbone"]["pos_embed"],
                             resize_grid(grid, (4, 2), method), atol=1e-6)
  file_name = "visual.positional_embedding" if name.startswith("clip") else "pos_embed"
  shape = (10, DIM) if name.startswith("clip") else (1, 10, DIM)
  assert report.resized == [(file_name, shape, (4, 2, DIM))]
  assert "resized 1: " + file_name in load.resized_and_skipped(report)


def test_dino_and_hugging_face_names_are_read(tmp_path, vit_variables):
  _, vit = vit_variables("vit_small")
  state, _ = maps.VIT.to_state_dict(vit, "timm")
  # DINO's teacher: `backbone.` prefix and a projection head that is ignored on purpose.
  dino = {f"backbone.{k}": v for k, v in state.items()}
  dino["head.mlp.0.weight"] = np.zeros((4, DIM), np.float32)
  dino["head.last_layer.weight_g"] = np.ones((7, 1), np.float32)
  path = tmp_path / "dino.safetensors"
  save_file(dino, str(path))
  merged, report = load.load_torch_weights(path, vit)
  assert leaves_equal(merged["params"]["backbone"], vit["params"]["backbone"])
  assert sorted(report.ignored) == ["head.last_layer.weight_g", "head.mlp.0.weight"]
  assert report.unused == []
  # A Hugging Face CLIPVisionModel: separate q/k/v, `pre_layrnorm`, a transposed projection.
  _, clip = vit_variables("clip_vit_b16")
  openai, _ = maps.CLIP.to_state_dict(clip, "openai")
  hf = _hugging_face(openai)
  path = tmp_path / "hf.safetensors"
  save_file(hf, str(path))
  _, blank = vit_variables("clip_vit_b16", seed=2)
  merged, report = load.load_torch_weights(path, blank)
  assert leaves_equal(merged["params"]["backbone"], clip["params"]["backbone"])
  assert report.unused == [] and report.mismatched == []


def _hugging_face(openai):
  """OpenAI tower names rewritten by hand as transformers' CLIPVisionModel names them."""
  hf = {"vision_model.embeddings.patch_embedding.weight": openai["visual.conv1.weight"],
        "vision_model.embeddings.class_embedding": openai["visual.class_embedding"],
        "vision_model.embeddings.position_embedding.weight": openai["visual.positional_embedding"],
        "vision_model.embeddings.position_ids": np.arange(9)[None],
        "visual_projection.weight": openai["visual.proj"].T.copy()}
  for ours, theirs in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
    for leaf in ("weight", "bias"):
      hf[f"vision_model.{theirs}.{leaf}"] = openai[f"visual.{ours}.{leaf}"]
  for i in range(DEPTH):
    block, layer = f"visual.transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}."
    for leaf in ("weight", "bias"):
      for j, part in enumerate("qkv"):
        packed = openai[f"{block}attn.in_proj_{leaf}"]
        hf[f"{layer}self_attn.{part}_proj.{leaf}"] = packed[j * DIM:(j + 1) * DIM].copy()
      for ours, theirs in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"),
                           ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
        hf[f"{layer}{theirs}.{leaf}"] = openai[f"{block}{ours}.{leaf}"]
  return hf


def test_the_map_is_chosen_by_the_model_and_layouts_by_the_map(vit_variables):
  _, vit = vit_variables("vit_small_ics")
  _, clip = vit_variables("clip_vit_b16")
  assert maps.resolve(torch_names.flatten(vit)) is maps.VIT
  assert maps.resolve(torch_names.flatten(clip)) is maps.CLIP
  assert maps.for_backbone("vit_base_ics") is maps.VIT and maps.for_backbone("clip_vit_b16") is maps.CLIP
  with pytest.raises(CheckpointMismatchError, match=r"layout 'fastreid' does not fit this model; "
                                                    r"its layouts are \['openai'\]"):
    export.export_variables(clip, "/tmp/never.safetensors", layout="fastreid")
