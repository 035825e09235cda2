"""A small latent diffusion model pre-trained on person images: SynthPerson's stand-in for Stable
Diffusion, so DCAC's "pre-trained diffusion prior" can be studied on a CPU.

Stable Diffusion is trained in two stages, and so is this (`ldm.stage`):

  vae   the autoencoder alone: reconstruction MSE of the decoded posterior sample
        plus a small KL to N(0, I) (`ldm.kl_weight`; SD adds a perceptual and a
        GAN loss, which a 32x32 toy does without);
  unet  the denoiser on the frozen VAE's latents (the VAE run named by
        `ldm.vae_from` is the method's constant): DDPM epsilon-prediction with
        the schedule DCAC fine-tunes with, conditioned through cross-attention on
        one token per training label (the pool's tracklet labels: the analogue of
        a caption naming who is in the picture), replaced by a learned null token
        with probability `ldm.null_p` as SD drops its captions. The latent scale
        (SD's 0.18215) is measured at the first epoch: 1 / std of the training
        set's posterior means, so latents enter the UNet at unit variance.

The evaluation feature is the flattened posterior mean (a diagnostic of how
much identity the latents keep, not a ReID model). `jreid.convert.diffusers_export`
writes a finished `unet` run, with its VAE, as a diffusers-format folder:
what DCAC reads, exactly as it reads Stable Diffusion v1.5.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jreid import config_blocks, config_rules
from jreid.config_rules import Float, Int, OneOf, Str
from jreid.core import checkpoint
from jreid.core.state import TrainState
from jreid.errors import ConfigError
from jreid.losses import diffusion
from jreid.methods import base
from jreid.models import latent_diffusion as ldm

RECIPE_FIELDS = ("ldm.vae_from",)  # the loop trains a recipe's VAE run once, then passes its folder


def ldm_config(**overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(dict(
      stage="vae",           # "vae" | "unet"
      preset="tiny",         # jreid.models.latent_diffusion's UNet / VAE architecture
      kl_weight=1e-6,
      vae_from="",           # stage "unet": the vae run's workdir (or recipe:configs/...)
      null_p=0.1,            # share of steps whose condition is the null token
      timesteps=1000, beta_start=8.5e-4, beta_end=0.012,
  ))
  config.update(overrides)
  return config


LDM_RULES = dict(stage=OneOf("vae", "unet"), preset=OneOf(*ldm.UNET_PRESETS), kl_weight=Float(0),
                 vae_from=Str(), null_p=Float(0, 1), timesteps=Int(1),
                 beta_start=Float(0, 1, open_low=True), beta_end=Float(0, 1, open_low=True))


@flax.struct.dataclass
class LDMState(TrainState):
  scaling: jax.Array  # float32 scalar: the latent scale (stage unet; 0 until measured)


def _latest(folder) -> dict:
  run, step = checkpoint.open_existing(folder)
  try:
    return run.restore_raw(step)
  finally:
    run.close()


def vae_params_of(folder: str) -> dict:
  """The VAE weights of a finished `vae` run's latest checkpoint."""
  raw = _latest(folder)
  if "vae" not in raw["params"]:
    raise ConfigError(f"ldm.vae_from={folder}: its checkpoint has no params/vae; name a run of "
                      "configs/ldm_synth.py:vae")
  return raw["params"]["vae"]


@dataclasses.dataclass(frozen=True)
class LatentDiffusion:
  vae: Any
  unet: Any | None
  update: Any
  settings: Any
  num_classes: int
  alphas_cumprod: Any = None  # (T,) the DDPM schedule (stage unet)
  vae_folder: str = ""

  @property
  def stage(self) -> str:
    return self.settings.stage

  def init(self, rng: jax.Array, images: jax.Array) -> LDMState:
    vae_rng, unet_rng, token_rng = jax.random.split(rng, 3)
    if self.stage == "vae":
      params = {"vae": ldm.init_params(self.vae, vae_rng)}
    else:
      width = self.unet.cross_attention_dim
      params = {"unet": ldm.init_params(self.unet, unet_rng),
                "tokens": jax.random.normal(token_rng, (self.num_classes + 1, width))}
    return LDMState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
                    opt_state=self.update.init(params), scaling=jnp.zeros((), jnp.float32))

  def load_constants(self):
    return vae_params_of(self.vae_folder) if self.stage == "unet" else {}

  def _vae_params(self, params, constants):
    return params["vae"] if self.stage == "vae" else constants

  def vae_loss(self, params, images, rng):
    sample_rng, _ = jax.random.split(rng)
    mean, logvar = ldm.posterior(self.vae, params["vae"], images)
    latent = diffusion.sample_latent(mean, logvar, sample_rng, scaling=1.0)
    recon = ldm.decode(self.vae, params["vae"], latent)
    mse = jnp.mean((recon.astype(jnp.float32) - images) ** 2)
    kl = 0.5 * jnp.mean(jnp.sum(mean ** 2 + jnp.exp(logvar) - 1.0 - logvar, axis=(1, 2, 3)))
    total = mse + self.settings.kl_weight * kl
    return total, {"loss_reconstruction": mse, "loss_kl": kl}

  def unet_loss(self, params, images, labels, scaling, rng, constants):
    s = self.settings
    sample_rng, noise_rng, t_rng, null_rng = jax.random.split(rng, 4)
    mean, logvar = jax.lax.stop_gradient(ldm.posterior(self.vae, constants, images))
    latents = diffusion.sample_latent(mean, logvar, sample_rng, scaling=scaling)
    noise = jax.random.normal(noise_rng, latents.shape, jnp.float32)
    timesteps = diffusion.sample_timesteps(t_rng, latents.shape[0], s.timesteps)
    noisy = diffusion.add_noise(latents, noise, timesteps, self.alphas_cumprod)
    null = jax.random.uniform(null_rng, labels.shape) < s.null_p
    context = params["tokens"][jnp.where(null, self.num_classes, labels)][:, None, :]
    eps = ldm.predict_noise(self.unet, params["unet"], noisy, timesteps, context)
    loss = diffusion.noise_prediction_loss(eps.astype(jnp.float32), noise)
    return loss, {"loss_diffusion": loss}

  def losses(self, params, state, batch, rng, constants):
    if self.stage == "vae":
      total, parts = self.vae_loss(params, batch["image"], rng)
    else:
      total, parts = self.unet_loss(params, batch["image"], batch["label"], state.scaling, rng,
                                    constants)
    return total, ({}, parts)

  def train_step(self, state: LDMState, batch: dict, rng: jax.Array, constants):
    (total, (stats, parts)), grads = self.update.value_and_grad(
        self.losses, state.params, state, batch, rng, constants)
    return self.update.apply(state, grads, stats, {"loss": total, **parts})

  def features(self, state: LDMState, images: jax.Array, constants) -> jax.Array:
    mean, _ = ldm.posterior(self.vae, self._vae_params(state.params, constants), images)
    return mean.reshape(mean.shape[0], -1).astype(jnp.float32)

  def on_epoch_start(self, state: LDMState, epoch: int, context):
    """Stage unet, first epoch: the latent scale that gives the training latents unit variance."""
    if self.stage != "unet" or float(state.scaling) > 0:
      return state, None
    std = float(np.std(context.extract(state, context.records)))
    if not np.isfinite(std) or std <= 0:
      raise ConfigError(f"the VAE of ldm.vae_from={self.vae_folder} gives latents of std {std}: "
                        "retrain it")
    context.log(f"latent scale 1/{std:.4f} = {1 / std:.5f} (SD-1.5's VAE: 0.18215)")
    return state.replace(scaling=jax.device_put(np.float32(1 / std), state.scaling.sharding)), None


def is_unet_run(folder) -> bool:
  config = pathlib.Path(folder).expanduser() / "config.json"
  if not config.is_file():
    return False
  saved = json.loads(config.read_text())
  return saved.get("method") == "latent_diffusion" and saved.get("ldm", {}).get("stage") == "unet"


def export_diffusers(folder) -> pathlib.Path:
  """A finished `unet` run and its VAE as a diffusers-format folder, `<run>/diffusers/` (written
  once): the layout Stable Diffusion v1.5 is published in, so DCAC reads both the same way."""
  folder = pathlib.Path(folder).expanduser()
  out = folder / "diffusers"
  if all((out / part / "config.json").is_file() for part in ("unet", "vae")):
    return out
  if not (folder / "results.json").is_file():
    raise ConfigError(f"{folder} is an unfinished latent_diffusion run: finish it (rerun its "
                      "command) before exporting it")
  saved = json.loads((folder / "config.json").read_text())
  s = saved["ldm"]
  vae_folder = s["vae_from"]
  if vae_folder.startswith(config_blocks.RECIPE):  # the folder the loop trained it in
    vae_folder = config_blocks.recipe_run(vae_folder, saved["data"]["root"])[1]
  from jreid.convert import diffusers_export
  raw = _latest(folder)
  vae_config = dict(ldm.vae_config(s["preset"]), scaling_factor=float(raw["scaling"]))
  diffusers_export.write(out, "unet", ldm.unet_config(s["preset"]), raw["params"]["unet"])
  diffusers_export.write(out, "vae", vae_config, vae_params_of(str(vae_folder)))
  return out


def validate(config) -> None:
  config_rules.check(config, {"ldm": LDM_RULES})
  s, d = config.ldm, config.data
  if d.height != d.width or d.height != ldm.vae_config(s.preset)["sample_size"]:
    raise ConfigError(f"method 'latent_diffusion' trains on squares of the VAE's sample_size "
                      f"{ldm.vae_config(s.preset)['sample_size']}: data.height and data.width "
                      f"are {d.height} and {d.width}")
  if tuple(d.mean) != (0.5,) * 3 or tuple(d.std) != (0.5,) * 3:
    raise ConfigError("method 'latent_diffusion' reads images in [-1, 1]: set data.mean and "
                      "data.std to (0.5, 0.5, 0.5)")
  if s.stage == "unet" and not s.vae_from:
    raise ConfigError("ldm.stage='unet' trains on a frozen VAE: set ldm.vae_from to the workdir "
                      "of a configs/ldm_synth.py:vae run (or recipe:configs/ldm_synth.py:vae)")


def build(config, num_classes: int, make_update) -> base.Method:
  validate(config)
  s = config.ldm
  impl = LatentDiffusion(vae=ldm.build_vae(ldm.vae_config(s.preset)),
                         unet=ldm.build_unet(ldm.unet_config(s.preset)) if s.stage == "unet" else None,
                         update=make_update(), settings=s, num_classes=num_classes,
                         alphas_cumprod=diffusion.alphas_cumprod(diffusion.scaled_linear_betas(
                             s.timesteps, s.beta_start, s.beta_end)),
                         vae_folder=s.vae_from)
  return base.method(config.method, init=impl.init, train_step=impl.train_step,
                     features=impl.features, load_constants=impl.load_constants,
                     on_epoch_start=impl.on_epoch_start, impl=impl)
