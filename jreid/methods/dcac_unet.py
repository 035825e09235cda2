"""DCAC's denoising UNet: which of its weights train under each fine-tuning variant, and its loss.

The variants are the paper's Tab. 5 (`dcac.diffusion`):

  none      no diffusion branch: the baseline ReID model (ID loss + PCL);
  frozen    the pre-trained UNet, nothing of it trained (only the prompts, through c);
  lora      LoRA adapters on its attention projections (`jreid.models.lora`);
  partial1  its output blocks train (diffusers' `up_blocks`, the output norm and conv) and
            the time embedding: the paper's Tab. 6 counts (599.37M, 696.41M trainable)
            are these plus its ReID model and prompts, and 2.05M short without the
            time embedding's two dense layers;
  partial2  its middle and output blocks (and the time embedding) train;
  full      all of it trains, from the pre-trained weights;
  scratch   all of it trains, from a random init.

Weights that do not train are the method's constants (`jreid.methods.base`):
read once, passed to the jitted step as an argument, never checkpointed and
with no optimiser state; the trainable part lives in the state under
`params/unet` (or `params/lora`). The step lays the two back together, and
merges LoRA into the kernels, before one ordinary `apply` of the UNet.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jreid.core import partition
from jreid.losses import diffusion
from jreid.models import latent_diffusion, lora

VARIANTS = ("none", "frozen", "lora", "partial1", "partial2", "full", "scratch")

# Path regexes of the UNet leaves each variant trains ("" trains none, ".*" all).
_OUTPUT = r"(up_blocks_\d+|conv_norm_out|conv_out|time_embedding)/.*"
TRAINABLE = {"none": "", "frozen": "", "lora": "", "partial1": _OUTPUT,
             "partial2": rf"(mid_block/.*|{_OUTPUT})", "full": ".*", "scratch": ".*"}


@dataclasses.dataclass(frozen=True)
class Denoiser:
  """The UNet, its noise schedule and the variant's split of its weights."""
  unet: Any                  # a FlaxUNet2DConditionModel
  variant: str
  lora_rank: int
  lora_scale: float
  lora_targets: str
  alphas_cumprod: jax.Array  # (T,)
  remat: bool = False        # recompute each UNet block's activations in the backward pass

  @property
  def trainable(self) -> str:
    return TRAINABLE[self.variant]

  def split(self, unet_params) -> tuple[dict, dict]:
    """(trainable, frozen) leaves of a full UNet tree under this variant."""
    return (partition.select(unet_params, self.trainable),
            partition.exclude(unet_params, self.trainable))

  def init_params(self, rng: jax.Array, random_unet) -> dict:
    """The branch's entries of the state's params: the trainable UNet part and / or LoRA."""
    trainable, frozen = self.split(random_unet)
    params = {"unet": trainable} if trainable else {}
    if self.variant == "lora":
      params["lora"] = lora.init(rng, frozen, self.lora_rank, self.lora_targets)
    return params

  def unet_params(self, params: dict, frozen: dict) -> dict:
    """The UNet's full tree for one apply: the frozen part, the trained part, LoRA merged in."""
    full = partition.merge(frozen, params.get("unet", {}))
    if "lora" in params:
      full = lora.merge(full, params["lora"], self.lora_scale)
    return full

  def loss(self, params: dict, frozen: dict, posterior: jax.Array, context: jax.Array,
           rng: jax.Array, scaling: float, to_compute=lambda tree: tree) -> jax.Array:
    """DDPM's epsilon-prediction MSE on a latent sampled from each image's cached posterior.

    `posterior` is (B, 2, c, h, w): each image's [mean, logvar], NCHW as the
    UNet reads latents (`jreid.models.latent_diffusion.posterior`).
    """
    latent_rng, noise_rng, t_rng = jax.random.split(rng, 3)
    latents = diffusion.sample_latent(posterior[:, 0], posterior[:, 1], latent_rng, scaling=scaling)
    noise = jax.random.normal(noise_rng, latents.shape, jnp.float32)
    timesteps = diffusion.sample_timesteps(t_rng, latents.shape[0], self.alphas_cumprod.shape[0])
    noisy = diffusion.add_noise(latents, noise, timesteps, self.alphas_cumprod)
    eps = latent_diffusion.predict_noise(self.unet, to_compute(self.unet_params(params, frozen)),
                                         to_compute(noisy), timesteps, to_compute(context),
                                         remat=self.remat)
    return diffusion.noise_prediction_loss(eps.astype(jnp.float32), noise)


def schedule(settings) -> jax.Array:
  betas = diffusion.scaled_linear_betas(settings.timesteps, settings.beta_start, settings.beta_end)
  return diffusion.alphas_cumprod(betas)
