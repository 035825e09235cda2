"""The SynthPerson latent diffusion runs: VAE, then UNet (through the recipe), exported as a
diffusers folder that reads back to the very weights the runs trained, which DCAC then uses."""
import pathlib

import jax
import numpy as np

from jreid import config_blocks
from jreid.convert import diffusers_weights
from jreid.core import checkpoint
from jreid.methods import latent_diffusion
from jreid.methods.dcac_weights import DiffusionSource
from jreid.train import loop
from tests.conftest import assert_finished_run


def _latest(folder):
  run, step = checkpoint.open_existing(folder)
  try:
    return run.restore_raw(step)
  finally:
    run.close()


def _assert_same_tree(got, expected):
  flat_got = dict(jax.tree_util.tree_flatten_with_path(got)[0])
  flat_expected = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
  assert sorted(map(str, flat_got)) == sorted(map(str, flat_expected))
  for path, value in flat_expected.items():
    np.testing.assert_array_equal(np.asarray(flat_got[path]), np.asarray(value), err_msg=str(path))


def test_the_exported_folder_reads_back_to_the_trained_weights(tmp_path):
  synth_root = tmp_path  # its own root; tests/configs lists ldm_synth as trained here (TRAINED_ELSEWHERE)
  unet_run = loop.resolve_init_from("recipe:configs/ldm_synth.py:smoke", str(synth_root), print)
  _, vae_run = config_blocks.recipe_run("recipe:configs/ldm_synth.py:smoke_vae", str(synth_root))
  for run in (unet_run, vae_run):  # the two smoke presets, checked as tests/configs checks its runs
    assert_finished_run(run)
  trained_unet, trained_vae = _latest(unet_run), _latest(vae_run)
  assert float(trained_unet["scaling"]) > 0  # measured at the first epoch

  folder = latent_diffusion.export_diffusers(unet_run)
  assert folder == pathlib.Path(unet_run) / "diffusers"
  assert latent_diffusion.export_diffusers(unet_run) == folder  # written once, then reused
  _, unet_params = diffusers_weights.load_component(folder, "unet")
  vae, vae_params = diffusers_weights.load_component(folder, "vae")
  _assert_same_tree(unet_params, trained_unet["params"]["unet"])
  _assert_same_tree(vae_params, trained_vae["params"]["vae"])
  assert vae.scaling_factor == np.float32(trained_unet["scaling"]).item()

  # DCAC given the run folder reads the export (the path `dcac.weights=recipe:...` takes).
  config = config_blocks.load_config("configs/dcac.py:smoke")
  config.data.root = str(synth_root)
  config.dcac.weights = str(unet_run)
  source = DiffusionSource.from_config(config)
  assert source.weights == str(folder)
  _assert_same_tree(source.unet_params(), trained_unet["params"]["unet"])
  assert source.context_dim() == 32 and source.scaling() == vae.scaling_factor
