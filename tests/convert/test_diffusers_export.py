"""diffusers-format export of Flax UNet / VAE params, checked against PyTorch diffusers itself.

The reference is torch diffusers loading the written folder with
`from_pretrained` (loading info: nothing missing, unexpected or mismatched)
and computing the same outputs as diffusers' Flax model on the same inputs.
Weights are drawn in numpy from abstract shapes (`jax.eval_shape` of
`init_weights`; a real Flax init of a tiny UNet runs op by op for ~40 s on
CPU), with norm scales around 1 and non-zero biases, so a transposed kernel
or a norm weight/bias swap cannot hide behind 1/0 inits.
"""
import functools
import json

import flax.linen
import jax
import numpy as np
import pytest
import safetensors
import torch

from jreid.convert import diffusers_export
from jreid.errors import CheckpointMismatchError, OutputPathError
from tests.conftest import random_flax_params

TINY_UNET = {
    "block_out_channels": [32, 64], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "layers_per_block": 1,
    "attention_head_dim": 2, "cross_attention_dim": 32, "sample_size": 8, "in_channels": 4,
    "out_channels": 4}
TINY_VAE = {
    "block_out_channels": [32, 64], "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2, "layers_per_block": 1, "latent_channels": 4,
    "sample_size": 32, "norm_num_groups": 32, "in_channels": 3, "out_channels": 3}
TINY_VAE_3 = {**TINY_VAE, "block_out_channels": [32, 64, 64],
              "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3}
# Measured (float32, CPU): UNet 1.0e-5 (with the exact gelu, below), VAE mean/logvar 4e-6, decode 5e-6;
# every output has a std of ~0.6.
ATOL = 3e-5


def _flax_model(part, config):
  import diffusers
  cls = diffusers.FlaxUNet2DConditionModel if part == "unet" else diffusers.FlaxAutoencoderKL
  return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in config.items()})


def _random_params(model, seed=0):
  return random_flax_params(jax.eval_shape(model.init_weights, jax.random.PRNGKey(0)), seed, spread=0.2)


def _load(torch_class, folder):
  """The torch model of `folder`, loaded strictly, the file's names exactly its state dict's: the
  loading info alone would pass the VAE's old attention names, which from_pretrained renames."""
  model, info = torch_class.from_pretrained(folder, output_loading_info=True)
  assert info["missing_keys"] == [] and info["unexpected_keys"] == [], info
  assert info["mismatched_keys"] == [] and info["error_msgs"] == [], info
  with safetensors.safe_open(folder / diffusers_export.WEIGHTS_FILE, "np") as written:
    assert sorted(written.keys()) == sorted(model.state_dict())
  return model.eval()


def _close(flax_out, torch_out):
  flax_out, torch_out = np.asarray(flax_out), torch_out.detach().numpy()
  assert flax_out.shape == torch_out.shape
  assert np.std(torch_out) > 0.1  # a real signal, not a collapsed output
  np.testing.assert_allclose(flax_out, torch_out, rtol=0, atol=ATOL)


def test_unet_loads_in_torch_and_computes_the_same(tmp_path, monkeypatch):
  from diffusers import UNet2DConditionModel
  # diffusers' FlaxGEGLU uses flax's tanh-approximate gelu where torch's GEGLU uses the exact one: a
  # model difference (~4e-4 on this output), not the export's; the Flax side runs the exact gelu here.
  monkeypatch.setattr(flax.linen, "gelu", functools.partial(jax.nn.gelu, approximate=False))
  model = _flax_model("unet", TINY_UNET)
  params = _random_params(model)
  # A config as a Flax model's carries its dtype and diffusers' bookkeeping: neither is written.
  given = {**TINY_UNET, "dtype": "float32", "_use_default_values": ["dropout"]}
  folder = diffusers_export.write_unet(tmp_path, given, params)
  assert folder == tmp_path / "unet"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["unet"]  # no temporary folder left
  assert json.loads((folder / "config.json").read_text()) == {
      "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.39.0", **TINY_UNET}

  rng = np.random.default_rng(1)
  latents = rng.normal(size=(2, 4, 8, 8)).astype(np.float32)
  timesteps = np.array([3, 731], np.int32)
  context = rng.normal(size=(2, 5, 32)).astype(np.float32)
  flax_out = jax.jit(lambda p, x, t, c: model.apply({"params": p}, x, t, c).sample)(
      params, latents, timesteps, context)
  with torch.no_grad():
    torch_out = _load(UNet2DConditionModel, folder)(
        torch.from_numpy(latents), torch.from_numpy(timesteps).long(), torch.from_numpy(context)).sample
  _close(flax_out, torch_out)


@pytest.mark.parametrize("config", [TINY_VAE, TINY_VAE_3], ids=["2-block", "3-block"])
def test_vae_loads_in_torch_and_encodes_decodes_the_same(tmp_path, config):
  from diffusers import AutoencoderKL, FlaxAutoencoderKL
  model = _flax_model("vae", config)
  params = _random_params(model)
  folder = diffusers_export.write_vae(tmp_path, config, params)
  assert json.loads((folder / "config.json").read_text())["_class_name"] == "AutoencoderKL"

  rng = np.random.default_rng(2)
  images = rng.uniform(-1, 1, size=(2, 3, 32, 32)).astype(np.float32)
  size = 32 // 2 ** (len(config["block_out_channels"]) - 1)
  latents = rng.normal(size=(2, 4, size, size)).astype(np.float32)

  @jax.jit
  def flax_run(p, x, z):
    posterior = model.apply({"params": p}, x, method=FlaxAutoencoderKL.encode).latent_dist
    decoded = model.apply({"params": p}, z, method=FlaxAutoencoderKL.decode).sample
    return posterior.mean, posterior.logvar, decoded

  mean, logvar, decoded = flax_run(params, images, latents)
  vae = _load(AutoencoderKL, folder)
  with torch.no_grad():
    posterior = vae.encode(torch.from_numpy(images)).latent_dist
    torch_decoded = vae.decode(torch.from_numpy(latents)).sample
  # Flax's posterior is NHWC; torch's NCHW.
  _close(np.transpose(mean, (0, 3, 1, 2)), posterior.mean)
  _close(np.transpose(logvar, (0, 3, 1, 2)), posterior.logvar)
  _close(decoded, torch_decoded)


def _tiny_vae_params():
  return _random_params(_flax_model("vae", TINY_VAE))


def test_a_tree_missing_a_leaf_is_refused_and_nothing_is_written(tmp_path):
  params = _tiny_vae_params()
  del params["encoder"]["mid_block"]["attentions_0"]["query"]["bias"]
  root = tmp_path / "export"
  with pytest.raises(CheckpointMismatchError) as err:
    diffusers_export.write_vae(root, TINY_VAE, params)
  message = str(err.value)
  assert "\n" not in message and "missing encoder/mid_block/attentions_0/query/bias" in message
  assert not root.exists()


def test_a_tree_of_another_config_names_the_shapes(tmp_path):
  with pytest.raises(CheckpointMismatchError, match=r"shape of decoder/conv_in/kernel \(3, 3, 4, 64\) "
                     r"\(expected \(3, 3, 8, 64\)\)"):
    diffusers_export.write_vae(tmp_path, {**TINY_VAE, "latent_channels": 8}, _tiny_vae_params())
  assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_earlier_export(tmp_path, monkeypatch):
  params = _tiny_vae_params()
  folder = diffusers_export.write_vae(tmp_path, TINY_VAE, params)
  before = (folder / diffusers_export.WEIGHTS_FILE).read_bytes()

  def full_disk(state, filename, metadata=None):
    open(filename, "wb").write(b"half")
    raise OSError(28, "No space left on device", filename)

  import safetensors.numpy
  monkeypatch.setattr(safetensors.numpy, "save_file", full_disk)
  perturbed = jax.tree_util.tree_map(lambda x: x + 1, params)
  with pytest.raises(OutputPathError, match="no space left on the device; an earlier export there is intact"):
    diffusers_export.write_vae(tmp_path, TINY_VAE, perturbed)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["vae"]
  assert (folder / diffusers_export.WEIGHTS_FILE).read_bytes() == before


def test_a_folder_that_is_not_an_export_is_not_replaced(tmp_path):
  (tmp_path / "vae").mkdir()
  (tmp_path / "vae" / "notes.txt").write_text("mine")
  with pytest.raises(OutputPathError, match="not an earlier export"):
    diffusers_export.write_vae(tmp_path, TINY_VAE, _tiny_vae_params())
  assert (tmp_path / "vae" / "notes.txt").read_text() == "mine"


def test_names_keep_real_underscores_and_split_module_lists():
  name = diffusers_export.torch_name
  assert name("unet", ("time_embedding", "linear_1", "kernel")) == "time_embedding.linear_1.weight"
  assert name("unet", ("down_blocks_0", "attentions_0", "transformer_blocks_0", "ff", "net_0", "proj",
                       "kernel")) == "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight"
  assert name("vae", ("decoder", "mid_block", "attentions_0", "proj_attn", "bias")) == \
      "decoder.mid_block.attentions.0.to_out.0.bias"


def test_bfloat16_params_are_written_as_the_float32_they_equal():
  import jax.numpy as jnp
  kernel = jnp.asarray(np.arange(6).reshape(2, 3) / 7, jnp.bfloat16)
  state = diffusers_export.torch_state("unet", {"conv_in": {"kernel": kernel}})
  assert state["conv_in.weight"].dtype == np.float32
  np.testing.assert_array_equal(state["conv_in.weight"], np.asarray(kernel, np.float32).T)
