"""DCAC's inputs through `jreid.main --config=configs/dcac.py:smoke`: a missing or partial Stable
Diffusion folder, a CLIP file of another size, and more identities than a checkpoint has prompts,
each one error line that says what to put where, with no workdir written."""
import jax
import numpy as np

from jreid.convert import diffusers_export, export
from jreid.models import latent_diffusion
from tests.bad_inputs.conftest import cli, error_line
from tests.conftest import assert_finished_run

LAYOUT = "<root>/unet/{config.json, diffusion_pytorch_model.safetensors or .bin}"


def _run(tmp_path, synth_root, *overrides):
  workdir = tmp_path / "run"
  line = error_line(cli("jreid.main", ["--config=configs/dcac.py:smoke", f"--workdir={workdir}",
                                       f"--config.data.root={synth_root}", *overrides]))
  assert not workdir.exists()
  return line


def _tiny_unet_folder(root):
  """A diffusers-format `unet/` of the tiny preset (random weights) and no `vae/`."""
  config = latent_diffusion.unet_config("tiny")
  shapes = latent_diffusion.param_shapes(latent_diffusion.build_unet(config))
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: rng.normal(0, 0.02, s.shape).astype(np.float32), shapes)
  diffusers_export.write_unet(root, config, params)


def test_a_missing_sd_folder_names_the_layout(tmp_path, synth_root):
  missing = tmp_path / "stable-diffusion-v1-5"
  line = _run(tmp_path, synth_root, f"--config.dcac.weights={missing}")
  assert f"no Stable Diffusion folder at {missing}" in line and LAYOUT in line


def test_a_folder_without_its_vae_names_the_missing_part(tmp_path, synth_root):
  root = tmp_path / "sd"
  _tiny_unet_folder(root)
  line = _run(tmp_path, synth_root, f"--config.dcac.weights={root}")
  assert "vae" in line and str(root) in line and LAYOUT in line


def test_a_clip_file_of_another_width_names_both_shapes(tmp_path, synth_root, vit_variables):
  _, wide = vit_variables("clip_vit_b16", size=(32, 16), patch_size=8, stride=8, embed_dim=48,
                          num_heads=2)  # the smoke tower is 32 wide
  weights = tmp_path / "ViT-wide.safetensors"
  export.export_variables(wide, weights)
  line = _run(tmp_path, synth_root, f"--config.init_from={weights}")
  assert str(weights) in line and "(48,) in the file" in line and "is (32,)" in line


def test_more_identities_than_the_checkpoints_prompts(tmp_path, synth_root):
  first = tmp_path / "sixteen_ids"
  done = cli("jreid.main", ["--config=configs/dcac.py:smoke", f"--workdir={first}",
                            f"--config.data.root={synth_root}", "--config.train.epochs=1"])
  assert done.code == 0, done.err[-2000:]
  assert_finished_run(first)  # the smoke preset trains (one epoch), for tests/configs too
  line = _run(tmp_path, synth_root, f"--config.resume={first}",
              "--config.data.train=synth_tiny,synth_tiny_multi/d0")  # 16 + 6 identities
  assert "condition/prompts is (16, 32) in the checkpoint but (22, 32)" in line
