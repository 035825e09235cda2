"""FastReID knowledge distillation (He et al. 2020, section 6; projects/FastDistill): a frozen
teacher from an earlier run trains a smaller student (`jreid.methods.distill`).

The teacher is any finished jreid run: `--config.teacher.checkpoint` names its
workdir, and `config.teacher.model` must be that run's `config.model`. Both
runs must train on the same data (same identities).

Presets (`--config=configs/distill.py:<arg>`):

* default: FastReID's `kd-sbs_r101ibn-sbs_r34` on Market-1501: an SBS
  R101-IBN-a teacher (GeM, CircleSoftmax s=64 m=0.35, soft-margin triplet)
  distilled into an SBS ResNet-34, 256x128, batch 256 = 16 ids x 16, Adam
  7e-4, wd 5e-4, 60 epochs (3,032 steps on Market-1501; FastReID's drop-last 3,000), warmup 2,000
  iterations from 0.1, constant to epoch 30 then cosine to 7e-7, backbone
  frozen for 500 iterations, bfloat16. The logit loss is the released
  `Distiller`'s symmetric KL at T=16 and only it (`pkt_weight=0`, as
  released); `--config.teacher.loss=l1_pkt --config.teacher.pkt_weight=1`
  is the paper's eq. 10. Teacher first (the same recipe, R101-IBN):
      python -m jreid.main --config=configs/distill.py:teacher --workdir=runs/r101ibn_market \
          --config.data.root=/data
      python -m jreid.main --config=configs/distill.py --workdir=runs/kd_r34_market \
          --config.data.root=/data --config.teacher.checkpoint=runs/r101ibn_market
  Reference (FastDistill README, DukeMTMC, `--config.data.train=dukemtmc
  --config.data.test=dukemtmc`): teacher mAP 81.14 / rank-1 90.66, R34 alone
  73.28 / 86.31, distilled 77.80 / 88.60. FastDistill starts the student
  from ImageNet weights (`--config.init_from=` a converted checkpoint).
* `teacher`: the teacher run of the default preset (method `supervised`).
* `synth`: CPU-sized on SynthPerson `small`, 128x64, the baseline's
  optimiser and 900 steps: the `configs/baseline.py:synth` model (ResNet-18,
  width 32, ~2.8M parameters) teaches a ResNet-34 of width 8 (~0.33M), with
  the symmetric KL at T=16 and PKT. The teacher is the quickstart run itself:
      python -m jreid.main --config=configs/baseline.py:synth --workdir=runs/synth
      python -m jreid.main --config=configs/distill.py:synth --workdir=runs/synth_kd \
          --config.teacher.checkpoint=runs/synth
  Measured (`python -m benchmarks.recipes`, `recipes_synth.json`): distilled
  mAP 18.67 / rank-1 23.57 (about 6 min on 2 CPU cores) vs the student alone
  11.48 / 12.14 (4 min); teacher 88.88 / 94.29.
* `synth_student`: that student trained alone (method `supervised`), the
  comparison for `synth`:
      python -m jreid.main --config=configs/distill.py:synth_student --workdir=runs/synth_r34
* `smoke`: seconds-long run on SynthPerson `tiny` for tests; its teacher is a
  `configs/baseline.py:smoke` run.
"""
from jreid import config_blocks
from jreid.methods.distill import teacher_config
from jreid.models.reid import model_config


def _sbs_model(backbone: str, ibn: str):
  """FastReID SBS head: GeM with learnable p, BNNeck, test on the BN feature."""
  model = model_config("reid", backbone)
  model.backbone.update(ibn=ibn)
  model.update(pooling="gem", gem_learnable=True)
  return model


def get_config(arg: str = ""):
  config = config_blocks.run(method="distill")
  config.model = _sbs_model("resnet34", "")
  # SBS losses: CE (eps 0.1) on CircleSoftmax logits + soft-margin batch-hard triplet.
  config.loss = config_blocks.loss(softmax="circle", softmax_scale=64.0, softmax_margin=0.35,
                                   triplet_margin=0.0, triplet_soft_margin=True)
  config.optim = config_blocks.optim(
      lr=7e-4, weight_decay=5e-4, schedule="cosine", cosine_delay_epochs=30,
      min_lr=7e-7, warmup_steps=2000, warmup_factor=0.1, freeze="backbone/.*", freeze_steps=500)
  config.train = config_blocks.train(batch_size=256, epochs=60, log_every=50,
                                     checkpoint_every=500, compute_dtype="bfloat16")
  config.eval = config_blocks.evaluation()
  config.data = config_blocks.data(train="market1501", test="market1501", root="~/datasets",
                                   height=256, width=128)
  config.data.update(num_instances=16, autoaug_p=0.1)
  config.teacher = teacher_config(model=_sbs_model("resnet101", "a"), loss="kl_pkt",
                                  temperature=16.0, logit_weight=1.0, pkt_weight=0.0,
                                  logit_scale=64.0)

  if arg == "teacher":
    config.method = "supervised"
    config.model = config.teacher.model
    del config["teacher"]
  elif arg in ("synth", "synth_student"):
    config.model = model_config("reid", "resnet34")
    config.model.backbone.update(width=8)
    config.loss = config_blocks.loss()
    config.optim = config_blocks.optim(warmup_steps=100, milestones=(600, 800))
    config.train = config_blocks.train(batch_size=64, steps=900, log_every=50, checkpoint_every=300)
    config.data = config_blocks.data(train="synth_small", test="synth_small", root="~/.cache/jreid",
                                     height=128, width=64)
    config.data.update(padding=5)
    teacher_model = model_config("reid", "resnet18")
    teacher_model.backbone.update(width=32)  # configs/baseline.py:synth
    config.teacher = teacher_config(model=teacher_model, loss="kl_pkt")
    if arg == "synth_student":
      config.method = "supervised"
      del config["teacher"]
  elif arg == "smoke":
    config.model = model_config("reid", "resnet18")
    config.model.backbone.update(width=8)
    config.loss = config_blocks.loss()
    config.optim = config_blocks.optim(warmup_steps=2, milestones=(3,))
    config.train = config_blocks.train(batch_size=16, steps=4, log_every=1, checkpoint_every=2)
    config.eval = config_blocks.evaluation(batch_size=32)
    config.data = config_blocks.data(train="synth_tiny", test="synth_tiny", root="~/.cache/jreid",
                                     height=32, width=16)
    config.data.update(padding=2)
    teacher_model = model_config("reid", "resnet18")
    teacher_model.backbone.update(width=8)
    config.teacher = teacher_config(model=teacher_model, loss="kl_pkt")
  elif arg:
    raise ValueError(f"unknown preset {arg!r} for configs/distill.py; use '', 'teacher', 'synth', "
                     "'synth_student' or 'smoke'")
  return config
