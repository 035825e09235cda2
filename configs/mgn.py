"""MGN (Wang et al. 2018) with FastReID's SBS training recipe (Base-MGN.yml + mgn_R50-ibn.yml):
a shared ResNet-50-IBN-a trunk to layer3_0, three branches (global; global +
2 stripes; global + 3 stripes), 8 BNNeck heads with CircleSoftmax, the
soft-margin triplet on the 3 globals and the 2 stripe concatenations, every
part averaged over its branches (`jreid.models.mgn`, `jreid.losses.objective`).

Deviations from FastReID: its MGN heads reduce each region to 256-d
(EMBEDDING_DIM 256) before the BN; here each region keeps its pooled
2048-d feature under a BNNeck, as the original MGN's global features do
(`--config.model.test_feature=pre_neck` for the pooled features).

Presets (`--config=configs/mgn.py:<arg>`):

* default: real Market-1501 under `--config.data.root`, 384x128, batch 64 =
  4 ids x 16, Adam 3.5e-4, wd 5e-4, 60 epochs, warmup 2000
  iterations from 0.1, cosine after epoch 30 to 7.7e-7, trunk and branches
  frozen for the first 1000 iterations (FastReID freezes backbone, b1, b2,
  b3), AutoAugment p=0.1, bfloat16 (FastReID uses AMP). FastReID's model zoo
  reports MGN R50-ibn on Market at about 90 mAP / 96 rank-1.
      python -m jreid.main --config=configs/mgn.py --workdir=runs/mgn_market \
          --config.data.root=/data
* `synth`: the recipe on SynthPerson `small` at CPU scale: ResNet-18-IBN-a
  of width 16 (three branches cost about what one ResNet-18 of width 32
  does; narrow ResNet-50s do not learn from scratch in 900 steps, see
  configs/sbs.py), 128x64, 900 steps with the schedule's fractions kept
  (warmup 150, freeze 75, cosine after 450), 8 instances per identity. Not
  yet measured.
      python -m jreid.main --config=configs/mgn.py:synth --workdir=runs/mgn_synth
* `smoke`: seconds-long run on SynthPerson `tiny` for tests.
"""
from jreid import config_blocks
from jreid.models.reid import model_config


def get_config(arg: str = ""):
  config = config_blocks.run(method="supervised")
  config.model = model_config("mgn", "resnet50")
  config.model.backbone.update(ibn="a")
  config.model.update(pooling="gem", gem_p=3.0, gem_learnable=True, test_feature="neck")
  config_blocks.sbs_recipe(config, arg, freeze="(backbone|b1|b2|b3)/.*",
                           synth_model=dict(name="resnet18", width=16))
  if arg == "smoke":
    config.data.update(height=48)  # 3 stripes need 3 rows on the 1/16 map
    config.model.backbone.update(name="resnet18")
  if arg not in ("", "synth", "smoke"):
    raise ValueError(f"unknown preset {arg!r} for configs/mgn.py; use '', 'synth' or 'smoke'")
  return config
