"""TransReID-SSL (Luo et al. 2021): DINO pre-training of an ICS ViT on unlabelled person images.

The DINO run (`jreid/methods/dino.py`) gives a teacher backbone; fine-tune it with
`configs/vit.py --config.init_from=<this workdir>` (init_from of a DINO run takes the
teacher), or export it. CFS subset selection: `python -m jreid.tools.cfs`, then
`--config.data.train_subset=<list> --config.data.train_subset_fraction=0.5`.

Presets (`--config=configs/transreid_ssl.py:<arg>`):

* default: LUPerson under `--config.data.root`, ViT-S/16 ICS at 256x128, 2 global crops
  (scale 0.4-1) + 8 local crops 128x64 (0.05-0.4), out_dim 65536, teacher temperature 0.04,
  student 0.1, centre momentum 0.9, teacher momentum 0.996 -> 1 (cosine), batch 512 (the
  released scripts: 8 GPUs x 64, main_dino.py's default), AdamW lr 5e-4 x batch / 256 = 1e-3
  with 10 warmup epochs and cosine to 1e-6, weight decay 0.04 -> 0.4
  (none on biases and norms), per-parameter gradient clip 3.0, the head's last layer
  frozen for the first epoch, drop path 0.1, 100 epochs, ImageNet mean/std (METHODS.md).
  Not run here (months of CPU time; the authors used 8 GPUs):
      python -m jreid.main --config=configs/transreid_ssl.py --workdir=runs/dino_lup \
          --config.data.root=/data
* `synth`: the CPU analogue on SynthPerson `lreid`'s pool (3,698 images, generated on first
  use), evaluated on `lreid/d0` (a domain the pool does not hold): a 4-block, 192-wide ViT
  (3 heads, patch 8) with a 16-channel ICS stem at 64x32, 2 global + 4 local 32x16 crops, head
  512 -> 128 -> 4096, batch 64, AdamW lr 1e-3, 6 epochs (1 of warmup, the last layer frozen
  for it). Fine-tune with `configs/vit.py:synth_d0`; `benchmarks/transreid_ssl.py` measures it:
      python -m jreid.main --config=configs/transreid_ssl.py:synth --workdir=runs/dino_synth
* `synth_patchify`: the same with the plain patch stem (`vit_small` widths as above):
      python -m jreid.main --config=configs/transreid_ssl.py:synth_patchify \
          --workdir=runs/dino_synth_patchify
* `smoke`: seconds-long run on SynthPerson's `tiny_multi` pool for tests.
"""
from jreid import config_blocks
from jreid.methods.dino import dino_config
from jreid.models.contrastive import encoder_config
from jreid.models.dino_head import LAST_LAYER


SYNTH_EPOCHS = 6


def get_config(arg: str = ""):
  config = config_blocks.run(method="dino")
  config.model = encoder_config("vit_small_ics")
  config.model.backbone.update(drop_path=0.1)
  config.dino = dino_config()
  batch = 512  # the released scripts: 8 GPUs x main_dino.py's default 64 per GPU
  config.optim = config_blocks.optim(
      name="adamw", lr=5e-4 * batch / 256, weight_decay=0.04, weight_decay_end=0.4,
      schedule="cosine", min_lr=1e-6, warmup_epochs=10.0, warmup_factor=0.0,
      groups=((r".*/bias|.*/scale", 1.0, 0.0),),  # DINO: no decay on biases and 1-D params
      clip_per_parameter=3.0, freeze=LAST_LAYER, freeze_epochs=1.0)
  config.train = config_blocks.train(batch_size=batch, epochs=100, log_every=100,
                                     checkpoint_every=5000)
  config.eval = config_blocks.evaluation()
  config.data = config_blocks.data(train="luperson", test="market1501", root="~/datasets",
                                   height=256, width=128)

  if arg in ("synth", "synth_patchify"):
    config.data.update(train="synth_lreid/pool", test="synth_lreid/d0", root="~/.cache/jreid",
                       height=64, width=32, blur_kernel=5)
    if arg == "synth_patchify":
      config.model = encoder_config("vit_small")
    config.model.backbone.update(embed_dim=192, depth=4, num_heads=3, patch_size=8, stride=8,
                                 drop_path=0.1, **({"stem_channels": 16} if arg == "synth" else {}))
    config.dino.update(out_dim=4096, hidden=512, bottleneck=128, num_local=4, local_height=32,
                       local_width=16)
    config.optim.update(lr=1e-3, warmup_epochs=1.0, freeze_epochs=1.0)
    config.train.update(batch_size=64, epochs=SYNTH_EPOCHS, log_every=20, checkpoint_every=200)
  elif arg == "smoke":
    config.data.update(train="synth_tiny_multi/pool", test="synth_tiny_multi/d0",
                       root="~/.cache/jreid", height=32, width=16, blur_kernel=3)
    config.model.backbone.update(embed_dim=16, depth=2, num_heads=2, patch_size=8, stride=8,
                                 stem_channels=8)
    config.dino.update(out_dim=32, hidden=16, bottleneck=8, num_local=2, local_height=16,
                       local_width=8)
    config.optim.update(lr=1e-3, warmup_epochs=0.0, warmup_steps=1, freeze_epochs=0.0,
                        freeze_steps=1)
    config.train.update(batch_size=16, steps=4, epochs=0.0, log_every=1, checkpoint_every=2)
    config.eval.update(batch_size=32)
  elif arg:
    raise ValueError(f"unknown preset {arg!r} for configs/transreid_ssl.py; use '', 'synth', "
                     "'synth_patchify' or 'smoke'")
  return config
