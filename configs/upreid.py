"""UP-ReID (Yang et al. 2022): unsupervised ReID pre-training, MoCo v2 plus intra-identity
regularisation: global consistency (CC) and the intrinsic patch contrast (ICC) with
horizontal-symmetry hard mining (HM). `jreid/methods/upreid.py` explains each part;
`config.upreid` holds every choice the paper leaves open, with the reason for its default.

The pre-trained trunk is the online encoder's `backbone/...`: fine-tune it with any
supervised config via `--config.init_from=<this workdir>` (BoT, `configs/baseline.py`), or
export it as a torchvision-style state dict (the projection head has no PyTorch name and
is left out), which PyTorch code and MGN's `init_from` (its branches copy layer3/layer4) read:
    python -m jreid.tools.export --checkpoint <this workdir> --out upreid_r50.pth --layout torchvision

Presets (`--config=configs/upreid.py:<arg>`):

* default: LUPerson (4.18M unlabelled images, `LUPerson/` under `--config.data.root`),
  ResNet-50 (standard last stride 2, as MoCo), 256x128, batch 800 (the paper's), SGD
  momentum 0.9, wd 1e-4, lr 0.09375 (LUPerson-MoCo's 0.3 for batch 2560, scaled
  linearly), cosine to 0 over 200 epochs (LUPerson-MoCo's length; the paper states
  none), queues of 65536, LUPerson mean/std, augmentation without colour jitter
  (random resized crop scale 0.2-1, grayscale 0.2, blur 0.5, flip, erasing 0.5).
  Monitored on Market-1501 (pooled backbone feature). The paper trained ~3 weeks on
  8 GPUs; fine-tuned MGN on Market-1501 reached mAP 91.1 / rank-1 97.1 (paper Tab. 3).
      python -m jreid.main --config=configs/upreid.py --workdir=runs/upreid_lup \
          --config.data.root=/data
* `moco`, `cc`, `icc`, `no_hm`: the paper's ablations (Tab. 4/5) at paper scale:
  MoCo v2 alone, MoCo + CC, MoCo + ICC (with HM), UP-ReID without HM.
      python -m jreid.main --config=configs/upreid.py:moco --workdir=runs/moco_lup --config.data.root=/data
      python -m jreid.main --config=configs/upreid.py:cc --workdir=runs/upreid_cc_lup --config.data.root=/data
      python -m jreid.main --config=configs/upreid.py:icc --workdir=runs/upreid_icc_lup --config.data.root=/data
      python -m jreid.main --config=configs/upreid.py:no_hm --workdir=runs/upreid_nohm_lup --config.data.root=/data
* `synth` (and `synth_moco`, `synth_cc`, `synth_icc`, `synth_no_hm`): CPU scale on
  SynthPerson's pre-training pool (`synth_lreid/pool`, 3,698 images, labels unused),
  ResNet-18 of width 32 at 64x32 (patches 16x16), batch 64 in 8 BN groups, queues of
  1024 (16 batches, under a third of the pool), key momentum 0.99, temperature 0.2
  (MoCo v2's), blur sigma scaled to the side, SGD lr 0.03, 600 steps (10 pool
  epochs); the code comments say why each differs from paper scale.
  Evaluated on `synth_lreid/d0`, which the pool does not contain. One UP-ReID step
  costs about 10 forward passes per image (two views, the original, the patches of
  both views): measured 71 img/s here (~9 min for 600 steps), MoCo alone 167 img/s;
  at 128x64 UP-ReID ran at 16.5 img/s.
      python -m jreid.main --config=configs/upreid.py:synth --workdir=runs/upreid_synth
      python -m jreid.main --config=configs/upreid.py:synth_moco --workdir=runs/moco_synth
      python -m jreid.main --config=configs/upreid.py:synth_cc --workdir=runs/upreid_cc_synth
      python -m jreid.main --config=configs/upreid.py:synth_icc --workdir=runs/upreid_icc_synth
      python -m jreid.main --config=configs/upreid.py:synth_no_hm --workdir=runs/upreid_nohm_synth
* `smoke` (and `smoke_moco`, ...): seconds-long runs on the `tiny_multi` pool for tests.
"""
from jreid import config_blocks
from jreid.methods.upreid import upreid_config
from jreid.models.contrastive import encoder_config

LUPERSON_MEAN = (0.3452, 0.3070, 0.3114)
LUPERSON_STD = (0.2633, 0.2500, 0.2480)
ABLATIONS = {
    "": {},
    "moco": dict(consistency=False, intrinsic=False, hard_mining=False),
    "cc": dict(intrinsic=False, hard_mining=False),
    "icc": dict(consistency=False),
    "no_hm": dict(hard_mining=False),
}


def get_config(arg: str = ""):
  scale, _, ablation = arg.partition("_") if arg.startswith(("synth", "smoke")) else ("", "", arg)
  if scale not in ("", "synth", "smoke") or ablation not in ABLATIONS:
    raise ValueError(f"unknown preset {arg!r} for configs/upreid.py; use '' or one of "
                     f"{[a for a in ABLATIONS if a]}, optionally prefixed synth_ (or 'synth', 'smoke')")
  config = config_blocks.run(method="upreid")
  config.model = encoder_config("resnet50")
  config.model.backbone.update(last_stride=2)  # a standard ResNet, as MoCo pre-trains; fine-tuning sets its own
  config.upreid = upreid_config(**ABLATIONS[ablation])
  config.optim = config_blocks.optim(name="sgd", lr=0.3 * 800 / 2560, momentum=0.9,
                                     weight_decay=1e-4, schedule="cosine")
  config.train = config_blocks.train(batch_size=800, epochs=200, log_every=100,
                                     checkpoint_every=5000)
  config.eval = config_blocks.evaluation()
  config.data = config_blocks.data(train="luperson", test="market1501", root="~/datasets",
                                   height=256, width=128)
  config.data.update(mean=LUPERSON_MEAN, std=LUPERSON_STD, rrc_scale=(0.2, 1.0), padding=0,
                     grayscale_p=0.2, blur_p=0.5, erase_p=0.5, flip_p=0.5)

  if scale == "synth":
    config.data.update(train="synth_lreid/pool", test="synth_lreid/d0", root="~/.cache/jreid",
                       height=64, width=32, blur_kernel=5)
    config.data.update(blur_sigma=(0.025, 0.5))  # SimCLR's sigma, scaled with the side (256 -> 64)
    config.model.backbone.update(name="resnet18", width=32)
    # A key encoder at 0.999 would still be 55% its random init after 600 steps
    # (0.999^600); a queue of 4096 would hold every pool image's previous key, a
    # near copy of the positive, among the negatives (the pool has 3,698 images).
    config.upreid.update(momentum=0.99, temperature=0.2, queue_size=1024, projection_hidden=512)
    config.optim.update(lr=0.03)
    config.train.update(batch_size=64, steps=600, epochs=0.0, log_every=50, checkpoint_every=300)
    config.eval.update(before_training=True)
  elif scale == "smoke":
    config.data.update(train="synth_tiny_multi/pool", test="synth_tiny_multi/d0",
                       root="~/.cache/jreid", height=32, width=16, blur_kernel=3)
    config.model.backbone.update(name="resnet18", width=8)
    config.upreid.update(queue_size=64, projection_hidden=32, projection_dim=16, key_bn_groups=2)
    config.train.update(batch_size=16, steps=4, epochs=0.0, log_every=1, checkpoint_every=2)
    config.eval.update(batch_size=32)
  return config
