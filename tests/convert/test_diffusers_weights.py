"""Stable Diffusion folders (diffusers format) read into the Flax UNet and VAE, checked against PyTorch.

Tiny PyTorch diffusers models with random, non-trivial weights (norm scales
in [0.5, 1.5], biases N(0, 0.1), every weight perturbed, so no zero init
hides a mapping error) are written with `save_pretrained` as safetensors and
as .bin, read back with `jreid.convert.diffusers_weights` (both files give
the same params), and run on the same inputs in both frameworks. Measured float32 differences (CPU): UNet
noise prediction <= 1e-4 of outputs up to ~1.4 (the sinusoidal embedding of
t up to 999 differs most), VAE posterior mean / logvar <= 3e-6, decode
<= 3e-5 of pixels up to ~2; the tolerances below leave 3-5x room.
"""
import functools
import json
import sys

import jax
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.numpy import load_file, save_file

from jreid.convert import diffusers_weights
from jreid.errors import WeightsFileError
from jreid.models import latent_diffusion

UNET_ATOL, VAE_ATOL, DECODE_ATOL = 1e-5, 1e-5, 6e-5


def perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, param in model.named_parameters():
      if "norm" in name and name.endswith("weight"):
        param.copy_(0.5 + torch.rand(param.shape, generator=generator))
      elif name.endswith("bias"):
        param.copy_(0.1 * torch.randn(param.shape, generator=generator))
      else:
        param.add_(0.02 * torch.randn(param.shape, generator=generator))
  return model.eval()


@pytest.fixture(scope="module")
def torch_models():
  torch.manual_seed(0)
  return (perturbed(UNet2DConditionModel(**latent_diffusion.unet_config("tiny")), 1),
          perturbed(AutoencoderKL(**latent_diffusion.vae_config("tiny")), 2))


@pytest.fixture(scope="module")
def folders(torch_models, tmp_path_factory):
  """{"safetensors": root, "bin": root}: the same weights in both formats."""
  roots = {}
  for kind in ("safetensors", "bin"):
    root = tmp_path_factory.mktemp(f"sd-{kind}")
    for component, model in zip(("unet", "vae"), torch_models):
      model.save_pretrained(root / component, safe_serialization=kind == "safetensors")
    roots[kind] = root
  assert (roots["bin"] / "unet" / "diffusion_pytorch_model.bin").is_file()
  return roots


def copy_folder(src, dst):
  for component in ("unet", "vae"):
    (dst / component).mkdir(parents=True)
    for path in (src / component).iterdir():
      (dst / component / path.name).write_bytes(path.read_bytes())
  return dst


def test_unet_noise_prediction_matches_pytorch(folders, torch_models):
  unet, params = diffusers_weights.load_unet(folders["safetensors"])
  rng = np.random.default_rng(0)
  latents = rng.normal(size=(3, 4, 8, 8)).astype(np.float32)
  timesteps = np.array([0, 417, 999])
  context = rng.normal(size=(3, 1, 32)).astype(np.float32)
  eps = np.asarray(jax.jit(functools.partial(latent_diffusion.predict_noise, unet))(
      params, latents, timesteps, context))
  with torch.no_grad():
    expected = torch_models[0](torch.from_numpy(latents), torch.from_numpy(timesteps),
                               torch.from_numpy(context)).sample.numpy()
  assert eps.shape == expected.shape == (3, 4, 8, 8)
  assert np.abs(expected).max() > 0.5  # the comparison is not between two near-zero maps
  np.testing.assert_allclose(eps, expected, atol=UNET_ATOL, rtol=0)


def test_vae_posterior_and_decode_match_pytorch(folders, torch_models):
  vae, params = diffusers_weights.load_vae(folders["safetensors"])
  images = np.random.default_rng(1).uniform(-1, 1, size=(2, 32, 24, 3)).astype(np.float32)

  @jax.jit
  def encode_decode(params, images):
    mean, logvar = latent_diffusion.posterior(vae, params, images)
    return mean, logvar, latent_diffusion.decode(vae, params, mean)

  mean, logvar, decoded = map(np.asarray, encode_decode(params, images))
  with torch.no_grad():
    dist = torch_models[1].encode(torch.from_numpy(images).permute(0, 3, 1, 2)).latent_dist
    expected_decoded = torch_models[1].decode(dist.mean).sample.permute(0, 2, 3, 1).numpy()
  assert mean.shape == logvar.shape == (2, 4, 4, 3)  # NCHW latents, 1/8 of the image
  np.testing.assert_allclose(mean, dist.mean.numpy(), atol=VAE_ATOL, rtol=0)
  np.testing.assert_allclose(logvar, dist.logvar.numpy(), atol=VAE_ATOL, rtol=0)
  assert decoded.shape == images.shape
  np.testing.assert_allclose(decoded, expected_decoded, atol=DECODE_ATOL, rtol=0)


@pytest.mark.parametrize("component", ["unet", "vae"])
def test_bin_and_safetensors_load_the_same_params(folders, component):
  from_bin = diffusers_weights.load_component(folders["bin"], component)[1]
  from_safetensors = diffusers_weights.load_component(folders["safetensors"], component)[1]
  assert jax.tree.structure(from_bin) == jax.tree.structure(from_safetensors)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(from_bin),
                                                  jax.tree.leaves(from_safetensors)))


def test_safetensors_needs_no_torch_and_bin_says_it_does(folders, monkeypatch):
  loaded = diffusers_weights.load_vae(folders["safetensors"])[1]
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
  without_torch = diffusers_weights.load_vae(folders["safetensors"])[1]
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(without_torch)))
  with pytest.raises(WeightsFileError, match=r"diffusion_pytorch_model\.bin needs PyTorch"):
    diffusers_weights.load_vae(folders["bin"])


def test_names_map_to_the_flax_tree():
  name = "down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_out.0.weight"
  assert diffusers_weights.flax_path(name) == (
      "down_blocks_0", "attentions_1", "transformer_blocks_0", "attn1", "to_out_0", "weight")
  assert diffusers_weights.flax_path("time_embedding.linear_1.bias") == (
      "time_embedding", "linear_1", "bias")


def test_a_file_with_the_old_vae_attention_names_loads_the_same(folders, tmp_path):
  """Files written before diffusers 0.15 (as the SD-1.5 repository's VAE) say query/key/value/proj_attn."""
  root = copy_folder(folders["safetensors"], tmp_path)
  path = root / "vae" / "diffusion_pytorch_model.safetensors"
  old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
  state = load_file(path)
  renamed = {}
  for name, value in state.items():
    for new, legacy in old.items():
      name = name.replace(f".attentions.0.{new}.", f".attentions.0.{legacy}.")
    renamed[name] = value
  assert "encoder.mid_block.attentions.0.query.weight" in renamed
  save_file(renamed, path)
  _, params = diffusers_weights.load_vae(root)
  _, expected = diffusers_weights.load_vae(folders["safetensors"])
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(expected)))


# --- folders that are not what the loader needs ---------------------------------------------------

def test_a_missing_folder_names_the_layout(tmp_path):
  with pytest.raises(WeightsFileError, match=r"no Stable Diffusion folder at .*unet/\{config\.json"):
    diffusers_weights.load_unet(tmp_path / "absent")


def test_a_missing_component_folder_names_it(tmp_path):
  (tmp_path / "unet").mkdir()
  with pytest.raises(WeightsFileError, match=r"has no vae/ folder: expected <root>/unet/.*<root>/vae/"):
    diffusers_weights.load_vae(tmp_path)


def test_the_component_folder_itself_is_told_to_give_its_parent(folders):
  with pytest.raises(WeightsFileError, match="looks like a model folder itself: give its parent"):
    diffusers_weights.load_unet(folders["safetensors"] / "unet")


def test_a_single_file_checkpoint_is_refused(tmp_path):
  ckpt = tmp_path / "v1-5-pruned.ckpt"
  ckpt.write_bytes(b"not read")
  with pytest.raises(WeightsFileError, match="is a file; give a diffusers-format folder"):
    diffusers_weights.load_unet(ckpt)
  with pytest.raises(WeightsFileError, match=r"holds v1-5-pruned\.ckpt.*diffusers-format folder is needed"):
    diffusers_weights.load_unet(tmp_path)


def test_a_missing_or_unreadable_config_is_named(folders, tmp_path):
  root = copy_folder(folders["safetensors"], tmp_path)
  config = root / "unet" / "config.json"
  config.write_text("{ not json")
  with pytest.raises(WeightsFileError, match=r"cannot read .*unet/config\.json as JSON"):
    diffusers_weights.load_unet(root)
  config.write_text(json.dumps({"_class_name": "AutoencoderKL"}))
  with pytest.raises(WeightsFileError, match=r"describes a AutoencoderKL, but the unet/ folder must "
                                             r"hold a UNet2DConditionModel"):
    diffusers_weights.load_unet(root)
  config.unlink()
  with pytest.raises(WeightsFileError, match=r"no .*unet/config\.json: the unet/ folder needs"):
    diffusers_weights.load_unet(root)


def test_a_config_the_flax_unet_cannot_build_is_refused(folders, tmp_path):
  root = copy_folder(folders["safetensors"], tmp_path)
  config = root / "unet" / "config.json"
  config.write_text(json.dumps({**json.loads(config.read_text()), "norm_num_groups": 16}))
  with pytest.raises(WeightsFileError, match=r"unet/config\.json: UNet config sets norm_num_groups=16"):
    diffusers_weights.load_unet(root)


def test_no_weight_file_says_what_to_put_there(folders, tmp_path):
  root = copy_folder(folders["safetensors"], tmp_path)
  (root / "vae" / "diffusion_pytorch_model.safetensors").unlink()
  with pytest.raises(WeightsFileError, match=r"no weights in .*vae: put diffusion_pytorch_model"
                                             r"\.safetensors \(or diffusion_pytorch_model\.bin\)"):
    diffusers_weights.load_vae(root)


def test_a_partial_file_names_the_missing_parameters(folders, tmp_path):
  root = copy_folder(folders["safetensors"], tmp_path)
  path = root / "unet" / "diffusion_pytorch_model.safetensors"
  state = load_file(path)
  dropped = [name for name in state if name.startswith("up_blocks.1.")]
  save_file({k: v for k, v in state.items() if k not in dropped}, path)
  with pytest.raises(WeightsFileError) as err:
    diffusers_weights.load_unet(root)
  message = str(err.value)
  assert f"{len(dropped)} model parameters have no tensor in the file (e.g. up_blocks_1/" in message
  assert "\n" not in message and "no place" not in message


def test_unexpected_and_misshapen_tensors_are_named(folders, tmp_path):
  root = copy_folder(folders["safetensors"], tmp_path)
  path = root / "unet" / "diffusion_pytorch_model.safetensors"
  state = load_file(path)
  state["extra.weight"] = np.zeros(3, np.float32)
  state["conv_in.weight"] = np.zeros((32, 5, 3, 3), np.float32)
  save_file(state, path)
  with pytest.raises(WeightsFileError) as err:
    diffusers_weights.load_unet(root)
  message = str(err.value)
  assert "1 tensors have no place in the model (e.g. extra.weight)" in message
  assert "1 shapes differ (e.g. conv_in.weight (32, 5, 3, 3) vs model (32, 4, 3, 3))" in message
  assert "have no tensor" not in message  # the misshapen one is reported once, as misshapen


def test_a_non_finite_tensor_is_refused(folders, tmp_path):
  root = copy_folder(folders["safetensors"], tmp_path)
  path = root / "vae" / "diffusion_pytorch_model.safetensors"
  state = load_file(path)
  state["decoder.conv_out.bias"] = np.full_like(state["decoder.conv_out.bias"], np.nan)
  save_file(state, path)
  with pytest.raises(WeightsFileError, match=r"tensor decoder\.conv_out\.bias .* holds 3 NaN/inf"):
    diffusers_weights.load_vae(root)
