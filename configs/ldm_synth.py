"""A small latent diffusion model pre-trained on SynthPerson's pool: the CPU stand-in for Stable
Diffusion v1.5 in the synthetic DCAC runs (`jreid/methods/latent_diffusion.py`).

Stable Diffusion learns its prior from a broad image collection before DCAC fine-tunes it on a
ReID set; here the broad collection is `synth_lreid/pool` (3,698 images of 400 people in 12
randomly styled domains, none of them a domain the DG runs train or test on), at 32x32 in
[-1, 1], flipped at random. Two stages, as SD:

* `vae`: the `synth` VAE (3 blocks of 32 / 64 / 64 channels: 32x32 -> 4x8x8 latents, SD's
  factor-8 128x128 -> 16x16 shrunk to factor 4), reconstruction MSE + 1e-6 KL, Adam 1e-3,
  batch 32, 600 steps:
      python -m jreid.main --config=configs/ldm_synth.py:vae --workdir=runs/ldm_vae
* default: the `synth` UNet (blocks of 32 / 64 channels, cross-attention width 64) on the
  frozen VAE's latents, conditioned on the pool's tracklet labels (10% null), DDPM with DCAC's
  schedule, Adam 5e-4, batch 32, 1500 steps; its VAE is the `vae` run, trained first if absent:
      python -m jreid.main --config=configs/ldm_synth.py --workdir=runs/ldm_unet \
          --config.ldm.vae_from=runs/ldm_vae
  `configs/dcac.py:synth` names this file as a recipe (`dcac.weights=recipe:configs/ldm_synth.py`),
  so the DCAC runs train both stages once per machine under `~/.cache/jreid/pretrained/`.
* `smoke_vae`, `smoke`: seconds-long runs on SynthPerson `tiny_multi`'s pool, for tests.

The evaluation (mAP of the flattened latent means on `lreid/d0`) is a diagnostic of how much of
a person the latents keep, not a ReID result.
"""
from jreid import config_blocks
from jreid.methods.latent_diffusion import ldm_config

HALF = (0.5, 0.5, 0.5)


def get_config(arg: str = ""):
  config = config_blocks.run(method="latent_diffusion")
  stage = "vae" if arg in ("vae", "smoke_vae") else "unet"
  smoke = arg.startswith("smoke")
  config.ldm = ldm_config(stage=stage, preset="tiny" if smoke else "synth")
  if stage == "unet":
    config.ldm.vae_from = f"recipe:configs/ldm_synth.py:{'smoke_vae' if smoke else 'vae'}"
  config.optim = config_blocks.optim(name="adam", lr=1e-3 if stage == "vae" else 5e-4,
                                     weight_decay=0.0, schedule="constant", warmup_steps=100)
  config.train = config_blocks.train(batch_size=32, steps=600 if stage == "vae" else 1500,
                                     log_every=50, checkpoint_every=300)
  config.eval = config_blocks.evaluation()
  config.data = config_blocks.data(train="synth_lreid/pool", test="synth_lreid/d0",
                                   root="~/.cache/jreid", height=32, width=32)
  config.data.update(mean=HALF, std=HALF, padding=0, erase_p=0.0)

  if smoke:
    config.data.update(train="synth_tiny_multi/pool", test="synth_tiny_multi/d0")
    config.optim.update(warmup_steps=0)
    config.train.update(batch_size=8, steps=2, log_every=1, checkpoint_every=2)
    config.eval.update(batch_size=32)
  elif arg not in ("", "vae"):
    raise ValueError(f"unknown preset {arg!r} for configs/ldm_synth.py; use '', 'vae', "
                     "'smoke_vae' or 'smoke'")
  return config
