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
  4 ids x 16, Adam 3.5e-4, wd 5e-4, 60 epochs of 202 iterations, warmup 2000
  iterations from 0.1, cosine after epoch 30 to 7.7e-7, trunk and branches
  frozen for the first 1000 iterations (FastReID freezes backbone, b1, b2,
  b3), AutoAugment p=0.1, bfloat16 (FastReID uses AMP). FastReID's model zoo
  reports MGN R50-ibn on Market at about 90 mAP / 96 rank-1.
      python -m jreid.main --config=configs/mgn.py --workdir=runs/mgn_market \
          --config.data.root=/data
* `synth`: the recipe on SynthPerson `small` at CPU scale: ResNet-50-IBN-a of
  width 8, 128x64, 900 steps with the schedule's fractions kept (warmup 150,
  freeze 75, cosine after 450), 8 instances per identity (SynthPerson
  identities have 10-14 images).
      python -m jreid.main --config=configs/mgn.py:synth --workdir=runs/mgn_synth
* `smoke`: seconds-long run on SynthPerson `tiny` for tests.
"""
from jreid import config_blocks
from jreid.models.reid import default_model_config


def get_config(arg: str = ""):
  config = config_blocks.run(method="supervised")
  config.model = default_model_config()
  config.model.update(meta="mgn", backbone="resnet50", ibn="a", pooling="gem", gem_p=3.0,
                      gem_learnable=True, test_feature="neck")
  config.loss = config_blocks.loss(softmax="circle", softmax_scale=64.0, softmax_margin=0.35,
                                   label_smoothing=0.1, triplet_soft_margin=True)
  iters_per_epoch = 202
  config.optim = config_blocks.optim(schedule="cosine", cosine_delay_steps=30 * iters_per_epoch,
                                     min_lr=7.7e-7, warmup_steps=2000, warmup_factor=0.1,
                                     freeze="(backbone|b1|b2|b3)/.*", freeze_steps=1000)
  config.train = config_blocks.train(batch_size=64, steps=60 * iters_per_epoch, log_every=100,
                                     checkpoint_every=2000, compute_dtype="bfloat16")
  config.eval = config_blocks.evaluation()
  config.data = config_blocks.data(train="market1501", test="market1501", root="~/datasets",
                                   height=384, width=128)
  config.data.update(num_instances=16, autoaug_p=0.1)

  if arg == "synth":
    config.data.update(train="synth_small", test="synth_small", root="~/.cache/jreid",
                       height=128, width=64, padding=5, num_instances=8)
    config.model.update(width=8)
    config.train.update(steps=900, log_every=50, checkpoint_every=300, compute_dtype="float32")
    config.optim.update(warmup_steps=150, freeze_steps=75, cosine_delay_steps=450)
    config.eval.update(before_training=True)
  elif arg == "smoke":
    config.data.update(train="synth_tiny", test="synth_tiny", root="~/.cache/jreid",
                       height=48, width=16, padding=2, num_instances=4)
    config.model.update(backbone="resnet18", width=8)
    config.train.update(batch_size=16, steps=4, log_every=1, checkpoint_every=2,
                        compute_dtype="float32")
    config.optim.update(warmup_steps=2, freeze_steps=1, cosine_delay_steps=2)
    config.eval.update(batch_size=32)
  elif arg:
    raise ValueError(f"unknown preset {arg!r} for configs/mgn.py; use '', 'synth' or 'smoke'")
  return config
