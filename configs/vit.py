"""A supervised ViT ReID baseline, TransReID-SSL's fine-tuning recipe (Luo et al. 2021, "Self-
supervised pre-training for transformer-based person re-identification"): ViT-S/16 with the IBN
conv stem (ICS), CLS token -> BNNeck (frozen bias) -> bias-free classifier, CE (no smoothing) on
the BN feature + soft-margin batch-hard triplet on the pre-BN CLS, which is also the test feature.

Presets (`--config=configs/vit.py:<arg>`):

* default: Market-1501 under `--config.data.root`, 256x128 (16x8 tokens), pixel mean/std 0.5,
  batch 64 = 16 ids x 4, SGD momentum 0.9, lr 4e-4 (biases x2, no decay), wd 1e-4, 120 epochs,
  cosine with 20 linear warmup epochs, drop path 0.1 (METHODS.md). Start from a pre-trained ICS
  ViT-S, e.g. TransReID-SSL's released LUPerson DINO teacher (nothing is downloaded):
      python -m jreid.main --config=configs/vit.py --workdir=runs/vit_market \
          --config.data.root=/data --config.init_from=/weights/vit_small_ics_cfs_lup.pth
  Expected (the paper, ViT-S/16 ICS pre-trained on the CFS-selected LUPerson): mAP 91.3% on
  Market-1501 (the abstract's figure; rank-1 is not in the stored text).
  A GPU run; the ViT-S/16 ICS 256x128 step is ~5 img/s on a 2-core CPU.
* `vit_base`: the same recipe on ViT-B/16 ICS (`vit_base_ics`; the paper's ViT-B: rank-1 96.7% on
  Market-1501 without re-ranking, as listed with its abstract):
      python -m jreid.main --config=configs/vit.py:vit_base --workdir=runs/vit_b_market \
          --config.data.root=/data --config.init_from=/weights/vit_base_ics_cfs_lup.pth
* `no_ics`: the plain patch stem (`vit_small`), for a DINO / timm ViT-S/16 checkpoint:
      python -m jreid.main --config=configs/vit.py:no_ics --workdir=runs/vit_plain_market \
          --config.data.root=/data --config.init_from=/weights/dino_deitsmall16_pretrain.pth
* `synth`: the CPU baseline on SynthPerson `small` (as `configs/baseline.py:synth`, generated
  on first use): a 4-block, 192-wide ViT (3 heads) with the ICS stem at 32 channels, 128x64
  images (patch 16: 8x4 tokens), from scratch, 900 steps of batch 64, SGD lr 0.03 with a
  100-step warmup and cosine decay (a from-scratch rate: 4e-4 is a fine-tuning rate).
  Measured (2-core CPU, seed 0): mAP 85.87 / rank-1 92.86 / mINP 67.40 in 11 min (the
  ResNet-18 BoT baseline: 88.88 / 94.29).
      python -m jreid.main --config=configs/vit.py:synth --workdir=runs/vit_synth
* `synth_d0`, `synth_d0_patchify`: the fine-tuning of `benchmarks/transreid_ssl.py` on
  SynthPerson `lreid/d0` (a domain DINO's pool does not hold): the 4-block, 192-wide ViT of
  `configs/transreid_ssl.py:synth` (ICS stem of 16 channels, or the plain patch stem) at 64x32,
  patch 8, 150 steps of batch 64, SGD lr 0.01 with a 20-step warmup and cosine decay; from a
  DINO run (its teacher) or from scratch:
      python -m jreid.main --config=configs/vit.py:synth_d0 --workdir=runs/vit_d0 \
          --config.init_from=runs/dino_synth
      python -m jreid.main --config=configs/vit.py:synth_d0_patchify --workdir=runs/vit_d0_plain \
          --config.init_from=runs/dino_synth_patchify
* `smoke`: seconds-long run on SynthPerson `tiny` for tests.
"""
from jreid import config_blocks
from jreid.models.backbones import backbone_config
from jreid.models.reid import model_config

HALF = (0.5, 0.5, 0.5)


def get_config(arg: str = ""):
  config = config_blocks.run(method="supervised")
  config.model = model_config("reid", "vit_small_ics")
  config.model.backbone.update(drop_path=0.1)
  config.model.test_feature = "pre_neck"
  config.loss = config_blocks.loss(label_smoothing=0.0, triplet_soft_margin=True)
  config.optim = config_blocks.optim(
      name="sgd", lr=4e-4, weight_decay=1e-4, momentum=0.9, schedule="cosine",
      warmup_epochs=20.0, warmup_factor=0.01, groups=((r".*/bias", 2.0, 0.0),))
  config.train = config_blocks.train(batch_size=64, epochs=120, log_every=100, checkpoint_every=2000)
  config.eval = config_blocks.evaluation()
  config.data = config_blocks.data(train="market1501", test="market1501", root="~/datasets",
                                   height=256, width=128)
  config.data.update(mean=HALF, std=HALF)

  if arg == "vit_base":
    config.model.backbone = backbone_config("vit_base_ics")
    config.model.backbone.update(drop_path=0.1)
  elif arg == "no_ics":
    config.model.backbone = backbone_config("vit_small")
    config.model.backbone.update(drop_path=0.1)
  elif arg == "synth":
    config.data.update(train="synth_small", test="synth_small", root="~/.cache/jreid",
                       height=128, width=64, padding=5)
    config.model.backbone.update(embed_dim=192, depth=4, num_heads=3, stem_channels=32)
    config.train.update(batch_size=64, steps=900, epochs=0.0, log_every=50, checkpoint_every=300)
    config.optim.update(lr=0.03, warmup_steps=100, warmup_epochs=0.0)
    config.eval.update(before_training=True)
  elif arg in ("synth_d0", "synth_d0_patchify"):
    # The fine-tuning budget of benchmarks/transreid_ssl.py: a held-out domain, short on purpose
    # (what a trunk learned on the pool shows as a head start), the DINO synth network's sizes.
    config.data.update(train="synth_lreid/d0", test="synth_lreid/d0", root="~/.cache/jreid",
                       height=64, width=32, padding=3)
    if arg == "synth_d0_patchify":
      config.model.backbone = backbone_config("vit_small")
    config.model.backbone.update(embed_dim=192, depth=4, num_heads=3, patch_size=8, stride=8,
                                 drop_path=0.1,
                                 **({"stem_channels": 16} if arg == "synth_d0" else {}))
    config.train.update(batch_size=64, steps=150, epochs=0.0, log_every=25, checkpoint_every=150)
    config.optim.update(lr=0.01, warmup_steps=20, warmup_epochs=0.0)
  elif arg == "smoke":
    config.data.update(train="synth_tiny", test="synth_tiny", root="~/.cache/jreid",
                       height=32, width=16, padding=2)
    config.model.backbone.update(embed_dim=16, depth=2, num_heads=2, patch_size=8, stride=8,
                                 stem_channels=8)
    config.train.update(batch_size=16, steps=4, epochs=0.0, log_every=1, checkpoint_every=2)
    config.optim.update(lr=0.01, warmup_steps=2, warmup_epochs=0.0)
    config.eval.update(batch_size=32)
  elif arg:
    raise ValueError(f"unknown preset {arg!r} for configs/vit.py; use '', 'vit_base', 'no_ics', "
                     "'synth', 'synth_d0', 'synth_d0_patchify' or 'smoke'")
  return config

