"""FastReID bag-of-tricks baseline (Luo et al. 2019): ResNet-50, last stride 1, GAP,
BNNeck with frozen bias, label-smoothed CE + batch-hard triplet (margin 0.3).

Presets (`--config=configs/baseline.py:<arg>`):

* default: real Market-1501 under `--config.data.root` (folder
  `Market-1501-v15.09.15/`), 256x128, batch 64 = 16 ids x 4, Adam 3.5e-4,
  wd 5e-4, 120 epochs (steps from the training set's size: 24,255 on Market's
  12,936 images; FastReID's drop-last epochs give 24,240), x0.1 at epochs 40 and
  90, linear warmup of 2000 iterations from 0.1 (METHODS.md). Expected
  (FastReID model zoo, BoT R50): mAP ~85.9%, rank-1 ~94.5%.
      python -m jreid.main --config=configs/baseline.py --workdir=runs/bot_market \
          --config.data.root=/data
  About 2 h on one modern GPU; CPU is not practical (~1.3 img/s).
* `r50_ibn`: the same recipe on ResNet-50-IBN-a (FastReID's BoT R50-ibn).
  Expected (FastReID model zoo, Market): mAP ~87%, rank-1 ~95%.
      python -m jreid.main --config=configs/baseline.py:r50_ibn --workdir=runs/bot_ibn_market \
          --config.data.root=/data
* `synth`: the CPU quickstart on SynthPerson `small` (generated on first
  use into `~/.cache/jreid/synthperson/`, ~1 min): a narrow ResNet-18 at
  128x64, same losses and optimiser. Expected: see README (mAP and rank-1
  measured on a 2-core CPU; about 10 minutes including data generation).
      python -m jreid.main --config=configs/baseline.py:synth --workdir=runs/synth
* `synth_long`: the same with every step count doubled (1800 steps), the
  bag-of-tricks side of the longer SBS comparison (`benchmarks/recipes.py`;
  measured mAP 93.06 / rank-1 95.71, 18 min on 2 CPU cores):
      python -m jreid.main --config=configs/baseline.py:synth_long --workdir=runs/synth_long
* `synth_pretrained`: `synth` fine-tuning the person-pretrained trunk of
  `configs/pretrain_synth.py` (`init_from=recipe:...`, trained once into
  `~/.cache/jreid/pretrained/`), the BoT side of `configs/sbs.py:synth_pretrained`.
  Measured: mAP 93.27 / rank-1 96.43 (seed 0), 12 min on 2 cores shared with another run.
      python -m jreid.main --config=configs/baseline.py:synth_pretrained --workdir=runs/synth_pt
* `synth_d0`: the same network on SynthPerson `lreid`'s first domain at 64x32 (the
  resolution of `configs/upreid.py:synth`), 600 steps: the fine-tuning run of
  `benchmarks/pretraining.py` (from scratch, or from an UP-ReID / MoCo pre-training
  with `--config.init_from=<its workdir>`).
      python -m jreid.main --config=configs/baseline.py:synth_d0 --workdir=runs/synth_d0
* `synth_d0_short`: the first 150 steps of `synth_d0` (the same schedule: constant lr
  after the 60-step warmup), the fine-tuning budget of `benchmarks/pretraining.py`.
  With 600 steps every start reaches about the same mAP on this small domain
  (random init 66.7, MoCo 64.9); a pre-trained trunk shows as a head start.
      python -m jreid.main --config=configs/baseline.py:synth_d0_short --workdir=runs/upreid_d0 \
          --config.init_from=runs/upreid_synth
* `synth_dg`: domain generalisation (`config.protocol="dg"`, `jreid.protocols.dg`), DCAC's
  multi-source leave-one-out protocol over SynthPerson `lreid`'s four seen domains: for each
  domain, the `synth_d0` network trained 600 steps on the other three combined and tested on
  it; per-target mAP / rank-1 / rank-5 / mINP and their average in results.json. Not measured
  yet (4 runs of about `synth_d0`'s length). The single-source protocol on the same data:
  `--config.dg.mode=single_source --config.dg.sources=synth_lreid/d0
  --config.dg.targets=synth_lreid/d1,synth_lreid/d2,synth_lreid/d3`.
      python -m jreid.main --config=configs/baseline.py:synth_dg --workdir=runs/synth_dg
* `smoke`: seconds-long run on SynthPerson `tiny` for tests.
* `smoke_dg`: `smoke`'s network in the leave-one-out protocol over SynthPerson `tiny_multi`'s
  three domains, 2 steps a run, for tests.
"""
from jreid import config_blocks
from jreid.models.reid import model_config


def get_config(arg: str = ""):
  config = config_blocks.run(method="supervised")
  config.model = model_config("reid", "resnet50")
  config.loss = config_blocks.loss()
  config.optim = config_blocks.optim(warmup_steps=2000, warmup_factor=0.1, milestone_epochs=(40, 90))
  config.train = config_blocks.train(batch_size=64, epochs=120, log_every=100, checkpoint_every=2000)
  config.eval = config_blocks.evaluation()
  config.data = config_blocks.data(train="market1501", test="market1501", root="~/datasets",
                                   height=256, width=128)

  if arg == "r50_ibn":
    config.model.backbone.update(ibn="a")
  elif arg in ("synth", "synth_long", "synth_pretrained"):
    length = 2 if arg == "synth_long" else 1  # synth_long: the same schedule stretched 2x
    config.data.update(train="synth_small", test="synth_small", root="~/.cache/jreid",
                       height=128, width=64, padding=5)
    config.model.backbone.update(name="resnet18", width=32)
    config.train.update(batch_size=64, steps=900 * length, epochs=0.0, log_every=50,
                        checkpoint_every=300)
    config.optim.update(warmup_steps=100 * length, milestones=(600 * length, 800 * length),
                        milestone_epochs=())
    config.eval.update(before_training=True)
    if arg == "synth_pretrained":
      config.init_from = "recipe:configs/pretrain_synth.py"
  elif arg in ("synth_d0", "synth_d0_short"):
    config.data.update(train="synth_lreid/d0", test="synth_lreid/d0", root="~/.cache/jreid",
                       height=64, width=32, padding=3)
    config.model.backbone.update(name="resnet18", width=32)
    config.train.update(batch_size=64, steps=600, epochs=0.0, log_every=50, checkpoint_every=300)
    config.optim.update(warmup_steps=60, milestones=(400, 550), milestone_epochs=())
    config.eval.update(before_training=True)
    if arg == "synth_d0_short":
      config.train.update(steps=150, checkpoint_every=150)
  elif arg == "synth_dg":
    config.protocol = "dg"
    config.dg = config_blocks.dg(mode="leave_one_out", targets=",".join(
        f"synth_lreid/d{i}" for i in range(4)))
    config.data.update(train="", test="", root="~/.cache/jreid", height=64, width=32, padding=3)
    config.model.backbone.update(name="resnet18", width=32)
    config.train.update(batch_size=64, steps=600, epochs=0.0, log_every=50, checkpoint_every=300)
    config.optim.update(warmup_steps=60, milestones=(400, 550), milestone_epochs=())
  elif arg in ("smoke", "smoke_dg"):
    config.data.update(train="synth_tiny", test="synth_tiny", root="~/.cache/jreid",
                       height=32, width=16, padding=2)
    config.model.backbone.update(name="resnet18", width=8)
    config.train.update(batch_size=16, steps=4, epochs=0.0, log_every=1, checkpoint_every=2)
    config.optim.update(warmup_steps=2, milestones=(3,), milestone_epochs=())
    config.eval.update(batch_size=32)
    if arg == "smoke_dg":
      config.protocol = "dg"
      config.dg = config_blocks.dg(mode="leave_one_out",
                                   targets="synth_tiny_multi/d0,synth_tiny_multi/d1,synth_tiny_multi/u0")
      config.data.update(train="", test="")
      config.train.update(steps=2)
      config.optim.update(warmup_steps=1, milestones=())
  elif arg:
    raise ValueError(f"unknown preset {arg!r} for configs/baseline.py; use '', 'r50_ibn', 'synth', 'synth_long', 'synth_pretrained', 'synth_d0', 'synth_d0_short', 'synth_dg', 'smoke' or 'smoke_dg'")
  return config
