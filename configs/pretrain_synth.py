"""Supervised person pre-training on SynthPerson's pool with its tracklet-noisy labels
(the LUPerson-NL recipe, Fu et al. 2022, in miniature): the checkpoint the
synthetic DASA runs start from.

Real DASA runs need no run of this file: they import person (or ImageNet)
pre-trained PyTorch weights directly, e.g.
`--config.init_from=/path/lup_moco_r50.pth` (LUPerson MoCo), a LUPerson-NL
`.pth`, or a torchvision ImageNet ResNet-50 (`jreid.convert.load` maps the
names). SynthPerson has no such published weights, so this file makes them.

Presets (`--config=configs/pretrain_synth.py:<arg>`):

* default: `synth_lreid/pool` (generated on first use into
  `~/.cache/jreid/synthperson/`): 3,698 images, 809 tracklet labels of 400
  people in 12 randomly styled domains, none of them a labelled domain. BoT
  losses (label-smoothed CE + batch-hard triplet) on the noisy labels, the
  DASA synth model (ResNet-18 of width 32, last stride 1, GeM p=3 fixed) at
  128x64, batch 64 = 16 labels x 4, Adam 3.5e-4, 1200 steps, warmup 150, x0.1
  at 800 and 1100. Evaluated on `synth_lreid/d0` (seen later by DASA) and
  `synth_lreid/u0` (unseen), neither trained on, to show the features transfer.
      python -m jreid.main --config=configs/pretrain_synth.py --workdir=runs/pretrain_synth
  then start a synthetic DASA run with `--config.init_from=runs/pretrain_synth`.
  Measured on a 2-core CPU (pool already generated): 13 min; mAP 23.11 /
  rank-1 21.90 on d0 and 34.78 / 37.63 on u0 (2026-12-02; an earlier code
  version gave 21.62 and 28.79), against 5.72 and 5.53 mAP for the untrained
  model.
* `ibn`: the same on ResNet-18-IBN-a, the trunk `configs/sbs.py:synth_pretrained`
  starts from (as FastReID's SBS starts from ImageNet ResNet-IBN-a weights). Measured
  (10 min on 2 cores while another run shared them): mAP 24.80 on d0, 41.21 on u0.
      python -m jreid.main --config=configs/pretrain_synth.py:ibn --workdir=runs/pretrain_synth_ibn
* `clip`: the CLIP stand-in of the synthetic DCAC runs (`configs/dcac.py:synth`): the CLIP
  ViT family (QuickGELU, ln_pre, ln_post(CLS) @ proj) at 4 blocks, 192 wide, 3 heads, patch 8,
  proj 128, on the same pool at 64x32 (8x4 tokens), pixel mean/std 0.5, CE + triplet on the
  noisy labels, Adam lr 5e-4 (100-step warmup, cosine), 1200 steps of batch 64. A weak
  stand-in: mAP 3.39 on d0 and 12.21 on u0 (2-core CPU, ~6 min):
      python -m jreid.main --config=configs/pretrain_synth.py:clip --workdir=runs/pretrain_clip
* `smoke`: seconds-long run on the `tiny_multi` pool for tests.
"""
from jreid import config_blocks
from jreid.models.reid import model_config


def get_config(arg: str = ""):
  config = config_blocks.run(method="supervised")
  # The DASA synth model exactly: init_from copies only names and shapes that match.
  config.model = model_config("reid", "resnet18")
  config.model.backbone.update(width=32, last_stride=1)
  config.model.update(pooling="gem", gem_p=3.0, gem_learnable=False)
  config.loss = config_blocks.loss()
  config.optim = config_blocks.optim(warmup_steps=150, milestones=(800, 1100))
  config.train = config_blocks.train(batch_size=64, steps=1200, log_every=50, checkpoint_every=400)
  config.eval = config_blocks.evaluation()
  config.data = config_blocks.data(train="synth_lreid/pool", test="synth_lreid/d0,synth_lreid/u0",
                                   root="~/.cache/jreid", height=128, width=64)
  config.data.update(padding=5, num_instances=4)

  if arg == "ibn":
    config.model.backbone.update(ibn="a")
  elif arg == "clip":
    config.model = model_config("reid", "clip_vit_b16")
    config.model.backbone.update(embed_dim=192, depth=4, num_heads=3, patch_size=8, stride=8,
                                 proj_dim=128)
    config.data.update(height=64, width=32, padding=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    # Adam 5e-4: d0 / u0 mAP 3.39 / 12.21 after the run, SGD 0.03 (momentum 0.9) 2.58 / 7.86.
    config.optim = config_blocks.optim(name="adam", lr=5e-4, weight_decay=1e-4, momentum=0.9,
                                       schedule="cosine", warmup_steps=100, warmup_factor=0.01)
  elif arg == "smoke":
    config.data.update(train="synth_tiny_multi/pool", test="synth_tiny_multi/d0",
                       height=32, width=16, padding=2)
    config.model.backbone.update(width=8)
    config.train.update(batch_size=16, steps=4, log_every=1, checkpoint_every=2)
    config.optim.update(warmup_steps=2, milestones=(3,))
    config.eval.update(batch_size=32)
  elif arg:
    raise ValueError(f"unknown preset {arg!r} for configs/pretrain_synth.py; use '', 'ibn', 'clip' or 'smoke'")
  return config
