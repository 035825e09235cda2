"""Stable Diffusion's UNet and VAE (diffusers' Flax classes): presets, layouts, remat, the quiet log.

The PyTorch parity of the outputs is in tests/convert/test_diffusers_weights.py.
"""
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.errors import ConfigError
from jreid.models import latent_diffusion

# A UNet with one block each way and no middle block: the smallest that has every kind of block.
NANO_UNET = {**latent_diffusion.unet_config("tiny"), "mid_block_type": None,
             "down_block_types": ("CrossAttnDownBlock2D",), "up_block_types": ("CrossAttnUpBlock2D",),
             "block_out_channels": (32,)}


def random_params(model, seed=0):
  """Normal leaves of the model's shapes, drawn in numpy (an eager flax init of a UNet takes seconds)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda leaf: (0.1 * rng.normal(size=leaf.shape)).astype(np.float32),
                      latent_diffusion.param_shapes(model))


def test_sd15_parameter_counts_are_the_published_ones():
  """859,520,964 and 83,653,863: the counts of PyTorch's SD-1.5 UNet and VAE (from shapes alone)."""
  unet = latent_diffusion.param_shapes(latent_diffusion.build_unet(latent_diffusion.unet_config("sd15")))
  vae = latent_diffusion.param_shapes(latent_diffusion.build_vae(latent_diffusion.vae_config("sd15")))
  assert latent_diffusion.count_params(unet) == 859_520_964
  assert latent_diffusion.count_params(vae) == 83_653_863
  block = unet["down_blocks_0"]["attentions_0"]["transformer_blocks_0"]
  assert block["attn2"]["to_k"]["kernel"].shape == (768, 320)  # (in, out); context is 768-d
  assert block["ff"]["net_0"]["proj"]["kernel"].shape == (320, 2560)  # GEGLU: 2 x 4 x 320
  assert unet["conv_in"]["kernel"].shape == (3, 3, 4, 320)


def test_presets_are_fresh_copies_and_unknown_ones_name_the_known():
  config = latent_diffusion.unet_config("sd15")
  config["cross_attention_dim"] = 1
  assert latent_diffusion.unet_config("sd15")["cross_attention_dim"] == 768
  with pytest.raises(ConfigError, match=r"unknown VAE preset 'sd21'; known: \['sd15', 'synth', 'tiny'\]"):
    latent_diffusion.vae_config("sd21")


@pytest.mark.parametrize("key, value, message", [
    ("norm_num_groups", 16, "UNet config sets norm_num_groups=16, but diffusers' "
                            "FlaxUNet2DConditionModel only implements norm_num_groups=32"),
    ("time_embedding_type", "fourier", "sets time_embedding_type='fourier'"),
    ("no_such_key", 1, "UNet config key 'no_such_key' is unknown to diffusers 0.39's"),
])
def test_a_config_the_flax_unet_cannot_build_is_refused(key, value, message):
  with pytest.raises(ConfigError, match=message):
    latent_diffusion.build_unet({**latent_diffusion.unet_config("tiny"), key: value})


def test_pytorch_config_keys_with_their_default_values_are_accepted():
  """A config.json that save_pretrained wrote holds PyTorch-only keys at the values Flax has built in."""
  written = {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.39.0",
             "act_fn": "silu", "norm_eps": 1e-05, "center_input_sample": False,
             "upcast_attention": True, **latent_diffusion.unet_config("tiny")}
  written["block_out_channels"] = list(written["block_out_channels"])  # JSON has lists
  unet = latent_diffusion.build_unet(written)
  assert unet.block_out_channels == (32, 64)


def test_vae_latents_are_nchw_at_an_eighth_and_decode_back_to_nhwc():
  vae = latent_diffusion.build_vae(latent_diffusion.vae_config("tiny"))
  params = latent_diffusion.param_shapes(vae)
  images = jnp.zeros((2, 32, 16, 3))
  mean, logvar = jax.eval_shape(lambda p, x: latent_diffusion.posterior(vae, p, x), params, images)
  assert mean.shape == logvar.shape == (2, 4, 4, 2)
  decoded = jax.eval_shape(lambda p, z: latent_diffusion.decode(vae, p, z), params, mean)
  assert decoded.shape == (2, 32, 16, 3)
  # A latent 4 wide is where diffusers' own decode would misread NCHW as NHWC.
  square = jax.eval_shape(lambda p, z: latent_diffusion.decode(vae, p, z), params,
                          jax.ShapeDtypeStruct((1, 4, 2, 4), jnp.float32))
  assert square.shape == (1, 16, 32, 3)


def test_remat_checkpoints_every_block_and_changes_no_gradient():
  unet = latent_diffusion.build_unet(NANO_UNET)
  params = random_params(unet)
  keys = jax.random.split(jax.random.key(1), 2)
  latents = jax.random.normal(keys[0], (2, 4, 8, 8))
  context = jax.random.normal(keys[1], (2, 1, 32))

  def loss(params, context, remat):
    eps = latent_diffusion.predict_noise(unet, params, latents, jnp.array([3, 700]), context,
                                         remat=remat)
    return jnp.mean(eps ** 2)

  grad = jax.grad(loss, argnums=(0, 1))
  remats = [sum(eqn.primitive.name == "remat2" for eqn in
                jax.make_jaxpr(grad, static_argnums=2)(params, context, remat).jaxpr.eqns)
            for remat in (False, True)]
  assert remats == [0, 6]  # down: 1 ResNet + 1 transformer; up: 2 + 2
  plain, checkpointed = (jax.jit(grad, static_argnums=2)(params, context, remat)
                         for remat in (False, True))
  for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(checkpointed)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  assert float(jnp.abs(plain[1]).max()) > 0  # the context does reach the output


def test_one_timestep_is_used_for_the_whole_batch():
  unet = latent_diffusion.build_unet(NANO_UNET)
  params = random_params(unet)
  latents = jax.random.normal(jax.random.key(1), (2, 4, 8, 8))
  context = jnp.ones((2, 1, 32))
  run = jax.jit(lambda t: latent_diffusion.predict_noise(unet, params, latents, t, context))
  np.testing.assert_array_equal(run(jnp.array(250)), run(jnp.array([250, 250])))


class Records(logging.Handler):
  def __init__(self):
    super().__init__(logging.DEBUG)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def test_the_flax_deprecation_line_is_dropped_and_other_warnings_are_not():
  records = Records()
  library = logging.getLogger("diffusers")  # the emitting modules' records propagate to it
  library.addHandler(records)
  try:
    unet = latent_diffusion.build_unet(NANO_UNET)
    params = latent_diffusion.param_shapes(unet)  # init and apply, traced: each runs every setup
    jax.eval_shape(lambda p: latent_diffusion.predict_noise(
        unet, p, jnp.zeros((1, 4, 8, 8)), jnp.array([1]), jnp.zeros((1, 1, 32))), params)
    logging.getLogger("diffusers.models.unets.unet_2d_condition_flax").warning("another warning")
  finally:
    library.removeHandler(records)
  assert records.messages == ["another warning"]
