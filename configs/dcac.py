"""DCAC (Li & Gong, "Unleashing the potential of pre-trained diffusion models for generalizable
person re-identification"): domain-generalisable ReID trained with Stable Diffusion's feedback
through a correlation-aware condition (`jreid/methods/dcac.py`), in the DG protocols of its
Sec. 5.1 (`jreid.protocols.dg`: per-target mAP / rank-1 and their average in results.json).

Every paper-scale preset starts the encoder from OpenAI's CLIP ViT-B/16 and the diffusion
branch from Stable Diffusion v1.5, both local files (nothing is downloaded): `init_from` the
CLIP file (`ViT-B-16.pt`, or a Hugging Face CLIP folder's safetensors) and `dcac.weights` the
diffusers-format SD-1.5 folder (`unet/`, `vae/`). The recipe (METHODS.md): 256x128, pixel
mean/std 0.5, flip / pad-crop / random erasing for the encoder and none for the VAE (128x128
bicubic), batch 64 = 16 ids x 4, Adam lr 5e-6 with wd 1e-4, linear warmup from 5e-7 over 10
epochs, x0.1 at epochs 30 and 50, 60 epochs; LoRA rank 8 (32 for MSMT17 and multi-source);
tau_c 0.6 (0.1 CUHK03, 1.0 MSMT17 and multi-source); lambda 1.

Presets (`--config=configs/dcac.py:<arg>`), paper Tab. 2-4 (mAP / rank-1):

* default (`market`): trained on Market-1501, tested on DukeMTMC-reID, MSMT17 and CUHK03-NP
  (detected): paper 49.5 / 69.1, 23.4 / 52.1, 32.5 / 33.2. A GPU run:
      python -m jreid.main --config=configs/dcac.py --workdir=runs/dcac_market \
          --config.data.root=/data --config.init_from=/weights/ViT-B-16.pt \
          --config.dcac.weights=/weights/stable-diffusion-v1-5
* `duke`, `msmt`, `cuhk03`: the other single-source rows (D: 42.3 / 71.5 on Market-1501,
  19.7 / 47.4 on MSMT17, 23.0 / 23.5 on CUHK03; MS: 52.1 / 77.9, 58.4 / 75.0, 34.1 / 34.4;
  C3: 42.0 / 68.6, 43.2 / 64.8, 17.8 / 47.3), with the same three flags:
      python -m jreid.main --config=configs/dcac.py:duke --workdir=runs/dcac_duke ...
      python -m jreid.main --config=configs/dcac.py:msmt --workdir=runs/dcac_msmt ...
      python -m jreid.main --config=configs/dcac.py:cuhk03 --workdir=runs/dcac_cuhk03 ...
* `multi`: leave-one-out over the four (average 46.4 / 63.9):
      python -m jreid.main --config=configs/dcac.py:multi --workdir=runs/dcac_multi \
          --config.data.root=/data --config.init_from=/weights/ViT-B-16.pt \
          --config.dcac.weights=/weights/stable-diffusion-v1-5

The ablations are config values: `--config.dcac.diffusion=none|frozen|lora|partial1|partial2|
full|scratch` (Tab. 5), `--config.dcac.condition=instance|class|correlation` (Tab. 7),
`--config.dcac.lora_rank=` (Tab. 9).

* `synth`: the CPU analogue on SynthPerson `lreid` (generated on first use): trained on `d0`,
  tested on the domains it never saw (`d1`, `d2`, `d3`, and the unseen-style `u0`, `u1`), at
  64x32. CLIP's stand-in is a CLIP-family ViT (4 blocks, 192 wide, patch 8, proj 128)
  pre-trained on SynthPerson's pool (`configs/pretrain_synth.py:clip`), Stable Diffusion's a
  small latent diffusion model pre-trained on the same pool (`configs/ldm_synth.py`: VAE
  32x32 -> 4x8x8, UNet of 32 / 64 channels, cross-attention width 64); both are recipes, trained
  once per machine under `~/.cache/jreid/pretrained/`. Batch 64 = 16 ids x 4, Adam 3e-4 with a
  1-epoch warmup, x0.1 at epoch 15, 20 epochs, LoRA rank 8, tau_c 0.6:
      python -m jreid.main --config=configs/dcac.py:synth --workdir=runs/dcac_synth
  The ablations as above (`--config.dcac.diffusion=none` is the baseline); measured in
  `benchmarks/dcac.py` (README, "DCAC").
* `smoke`: seconds-long run on SynthPerson `tiny` with a tiny CLIP-style ViT and a tiny
  random UNet / VAE, for tests.
"""
from jreid import config_blocks
from jreid.methods.dcac import dcac_config
from jreid.models.reid import model_config

HALF = (0.5, 0.5, 0.5)
CUHK03 = "cuhk03_detected"  # CUHK03-NP as DCAC counts it (7,365 training images)
FOUR = ("market1501", "dukemtmc", "msmt17", CUHK03)
SOURCES = {"market": "market1501", "duke": "dukemtmc", "msmt": "msmt17", "cuhk03": CUHK03}
TAU = {"market": 0.6, "duke": 0.6, "msmt": 1.0, "cuhk03": 0.1}


def get_config(arg: str = ""):
  config = config_blocks.run(method="dcac")
  config.model = model_config("reid", "clip_vit_b16")
  config.dcac = dcac_config()
  config.optim = config_blocks.optim(
      name="adam", lr=5e-6, weight_decay=1e-4, warmup_epochs=10.0, warmup_factor=0.1,
      milestone_epochs=(30.0, 50.0), gamma=0.1, frozen="backbone/patch_embed/.*")
  config.train = config_blocks.train(batch_size=64, epochs=60, log_every=50, checkpoint_every=2000)
  config.eval = config_blocks.evaluation()
  config.data = config_blocks.data(train="", test="", root="~/datasets", height=256, width=128)
  config.data.update(mean=HALF, std=HALF, num_instances=4)
  config.protocol = "dg"

  arg = arg or "market"
  if arg in SOURCES:
    source = SOURCES[arg]
    config.dg = config_blocks.dg(mode="single_source", sources=source,
                                 targets=",".join(d for d in FOUR if d != source))
    config.dcac.update(temperature=TAU[arg], lora_rank=32 if arg == "msmt" else 8)
  elif arg == "multi":
    config.dg = config_blocks.dg(mode="leave_one_out", targets=",".join(FOUR))
    config.dcac.update(temperature=1.0, lora_rank=32)
  elif arg == "synth":
    config.dg = config_blocks.dg(mode="single_source", sources="synth_lreid/d0", targets=",".join(
        f"synth_lreid/{d}" for d in ("d1", "d2", "d3", "u0", "u1")), test_sources=True)
    config.data.update(root="~/.cache/jreid", height=64, width=32, padding=3)
    config.model.backbone.update(embed_dim=192, depth=4, num_heads=3, patch_size=8, stride=8,
                                 proj_dim=128)
    config.init_from = "recipe:configs/pretrain_synth.py:clip"
    config.dcac.update(weights="recipe:configs/ldm_synth.py", vae_size=32)
    config.optim.update(lr=3e-4, warmup_epochs=1.0, warmup_factor=0.1, milestone_epochs=(15.0,))
    config.train.update(epochs=20, log_every=20, checkpoint_every=200)
  elif arg == "smoke":
    config.protocol = "single"
    config.data.update(train="synth_tiny", test="synth_tiny", root="~/.cache/jreid",
                       height=32, width=16, padding=2)
    config.model.backbone.update(embed_dim=32, depth=2, num_heads=2, patch_size=8, stride=8,
                                 proj_dim=16)
    config.dcac.update(weights="random", preset="tiny", vae_size=16, lora_rank=4)  # 4x8x8 latents
    config.optim.update(lr=1e-3, warmup_epochs=0.0, milestone_epochs=())
    config.train.update(batch_size=16, epochs=2, epoch_steps=2, log_every=1, checkpoint_every=2)
    config.eval.update(batch_size=32)
  else:
    raise ValueError(f"unknown preset {arg!r} for configs/dcac.py; use '' (market), 'duke', "
                     "'msmt', 'cuhk03', 'multi', 'synth' or 'smoke'")
  return config
