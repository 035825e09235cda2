"""Where DCAC's UNet and VAE come from: a diffusers-format folder, or a random init for tests.

`dcac.weights` names a local folder in diffusers' layout (`unet/` and `vae/`,
each a `config.json` and a `diffusion_pytorch_model.safetensors` or `.bin`:
Stable Diffusion v1.5 as published, nothing downloaded), read by
`jreid.convert.diffusers_weights`; the architecture is the folder's own
config. A finished run of `configs/ldm_synth.py` (SynthPerson's stand-in for SD, or
`recipe:configs/ldm_synth.py`, which the loop trains once) is first written as
such a folder (`jreid.methods.latent_diffusion.export_diffusers`).
`"random"` builds `dcac.preset`'s architecture with random weights
seeded by `config.seed` (the smoke runs; `scratch` needs no pre-trained UNet
but still reads the VAE from a folder when one is given). Each file is read
once per process, however many hooks ask.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib

import jax
import jax.numpy as jnp

from jreid.core import run_once
from jreid.methods import latent_diffusion as latent_diffusion_method
from jreid.models import latent_diffusion

RANDOM = "random"


@dataclasses.dataclass
class DiffusionSource:
  weights: str            # a diffusers-format folder, or "random"
  preset: str             # the architecture of a random init ("sd15" | "tiny")
  seed: int
  cache_folder: pathlib.Path
  _memo: dict = dataclasses.field(default_factory=dict, repr=False)

  @classmethod
  def from_config(cls, config) -> "DiffusionSource":
    s = config.dcac
    cache = s.posterior_cache or str(pathlib.Path(config.data.root).expanduser() / "cache"
                                     / "vae_posteriors")
    weights = s.weights or RANDOM  # validate() allows "" only where nothing pre-trained is needed
    if weights != RANDOM and latent_diffusion_method.is_unet_run(weights):  # configs/ldm_synth.py
      weights = str(latent_diffusion_method.export_diffusers(weights))
    return cls(weights=weights, preset=s.preset, seed=config.seed, cache_folder=pathlib.Path(cache))

  def check_files(self) -> None:
    """Both parts' folders, configs and weight files exist: before the run writes anything (the
    VAE is first read when the input pipeline is built)."""
    if self.is_random:
      return
    from jreid.convert import diffusers_weights
    for part, (class_name, _) in diffusers_weights.COMPONENTS.items():
      folder = diffusers_weights.component_folder(self.weights, part)
      diffusers_weights.read_config(folder / "config.json", class_name)
      diffusers_weights.weights_file(folder)

  @property
  def is_random(self) -> bool:
    return self.weights == RANDOM

  def _once(self, key: str, make):
    if key not in self._memo:
      self._memo[key] = make()
    return self._memo[key]

  def _folder(self, part: str):
    """(model, params) of the folder's `part`, read once."""
    from jreid.convert import diffusers_weights
    return self._once(part, lambda: diffusers_weights.load_component(self.weights, part))

  def unet(self):
    if self.is_random:
      return self._once("unet", lambda: (latent_diffusion.build_unet(
          latent_diffusion.unet_config(self.preset)), None))[0]
    return self._folder("unet")[0]

  def vae(self):
    if self.is_random:
      return self._once("vae", lambda: (latent_diffusion.build_vae(
          latent_diffusion.vae_config(self.preset)), None))[0]
    return self._folder("vae")[0]

  def context_dim(self) -> int:
    return int(self.unet().cross_attention_dim)

  def scaling(self) -> float:
    """The VAE's latent scale (its config's scaling_factor: SD-1.5's 0.18215)."""
    return float(self.vae().scaling_factor)

  def random_unet(self, rng: jax.Array):
    """A randomly initialised UNet tree (jittable: the state's init under jit)."""
    return latent_diffusion.init_params(self.unet(), rng)

  def unet_params(self):
    """The pre-trained UNet weights (random ones, seeded by the config, for "random")."""
    if self.is_random:
      return self._once("unet_params", lambda: run_once.jit(self.random_unet)(
          jax.random.fold_in(jax.random.key(self.seed), 1)))
    return self._folder("unet")[1]

  def vae_params(self):
    if self.is_random:
      return self._once("vae_params", lambda: run_once.jit(
          lambda rng: latent_diffusion.init_params(self.vae(), rng))(
              jax.random.fold_in(jax.random.key(self.seed), 2)))
    return self._folder("vae")[1]

  def encoder(self):
    """(B, S, S, 3) images in [-1, 1] -> the VAE posterior's (mean, logvar), NCHW, jitted."""
    vae, params = self.vae(), jax.device_put(self.vae_params())  # on the device once, not per batch
    encode = jax.jit(lambda p, x: latent_diffusion.posterior(vae, p, x))
    return lambda images: jax.device_get(encode(params, jnp.asarray(images)))

  def vae_digest(self) -> str:
    """Identifies the VAE for the posterior cache: its weight file's path, size and mtime."""
    if self.is_random:
      text = (f"random:{self.preset}:{self.seed}:"
              f"{json.dumps(latent_diffusion.vae_config(self.preset), sort_keys=True)}")
    else:
      folder = pathlib.Path(self.weights).expanduser() / "vae"
      files = sorted(p for p in folder.iterdir() if p.is_file())
      text = "|".join(f"{p.resolve()}:{os.stat(p).st_size}:{os.stat(p).st_mtime_ns}" for p in files)
    return hashlib.sha1(text.encode()).hexdigest()[:16]
