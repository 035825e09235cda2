"""Unsupervised ReID by cluster contrast (Dai et al. 2021), TransReID-SSL's USL / UDA fine-tuning.

Every epoch re-clusters the training set (k-reciprocal Jaccard distance, k1 30 / k2 6, DBSCAN
on the precomputed matrix) and trains the model against a memory of cluster centres
(`jreid/methods/cluster_contrast.py`). No identity label of the training set is used; the
logs report the clusters' purity against them where they exist.

Presets (`--config=configs/cluster_contrast.py:<arg>`):

* default: USL on Market-1501 under `--config.data.root` from TransReID-SSL's DINO teacher
  (ViT-S/16 ICS, 256x128, pixel mean/std 0.5, test on the BN feature): DBSCAN eps 0.6,
  min_samples 4, memory temperature 0.05, momentum 0.2 (hardest-sample update), batch 256 of
  32 pseudo-ids x 8, 50 epochs of 200 steps, SGD lr 3.5e-4 (momentum 0.9), wd 5e-4, x0.1 at
  epoch 20 (METHODS.md). A GPU run (nothing is downloaded):
      python -m jreid.main --config=configs/cluster_contrast.py --workdir=runs/cc_market \
          --config.data.root=/data --config.init_from=/weights/vit_small_ics_cfs_lup.pth
  UDA: the same from a source-supervised run, e.g. `configs/vit.py` on MSMT17:
      python -m jreid.main --config=configs/cluster_contrast.py --workdir=runs/cc_msmt2market \
          --config.data.root=/data --config.init_from=runs/vit_msmt
* `msmt`: USL on MSMT17 (eps 0.7):
      python -m jreid.main --config=configs/cluster_contrast.py:msmt --workdir=runs/cc_msmt \
          --config.data.root=/data --config.init_from=/weights/vit_small_ics_cfs_lup.pth
* `synth`: the CPU analogue on SynthPerson `lreid/d0` (a domain the pool does not hold; its
  labels unused) with the 4-block, 192-wide ICS ViT of `configs/transreid_ssl.py:synth` at
  64x32: 5 epochs of 30 steps, batch 64 = 8 pseudo-ids x 8, SGD lr 3.5e-4 (x0.1 at epoch 4).
  Start it from that DINO run with `--config.init_from`, or from scratch; measured in
  `benchmarks/transreid_ssl.py` (README, "TransReID-SSL"):
      python -m jreid.main --config=configs/cluster_contrast.py:synth --workdir=runs/cc_synth \
          --config.init_from=runs/dino_synth
* `smoke`: seconds-long run on SynthPerson `tiny` for tests.
"""
from jreid import config_blocks
from jreid.methods.cluster_contrast import cluster_config
from jreid.models.reid import model_config

HALF = (0.5, 0.5, 0.5)


def get_config(arg: str = ""):
  config = config_blocks.run(method="cluster_contrast")
  config.model = model_config("reid", "vit_small_ics")
  config.model.backbone.update(drop_path=0.1)
  config.cluster = cluster_config()
  config.optim = config_blocks.optim(name="sgd", lr=3.5e-4, weight_decay=5e-4, momentum=0.9,
                                     schedule="multistep", milestone_epochs=(20.0,), gamma=0.1)
  config.train = config_blocks.train(batch_size=256, epochs=50, epoch_steps=200, log_every=50,
                                     checkpoint_every=1000)
  config.eval = config_blocks.evaluation()
  config.data = config_blocks.data(train="market1501", test="market1501", root="~/datasets",
                                   height=256, width=128)
  config.data.update(mean=HALF, std=HALF, num_instances=8)

  if arg == "msmt":
    config.data.update(train="msmt17", test="msmt17")
    config.cluster.update(eps=0.7)
  elif arg == "synth":
    config.data.update(train="synth_lreid/d0", test="synth_lreid/d0", root="~/.cache/jreid",
                       height=64, width=32, padding=3)
    config.model.backbone.update(embed_dim=192, depth=4, num_heads=3, patch_size=8, stride=8,
                                 stem_channels=16)
    config.cluster.update(max_clusters=512)
    # The release's rate: at 0.01 (or 1e-3) the features merge after one epoch (2-7 clusters).
    config.optim.update(lr=3.5e-4, milestone_epochs=(4.0,))
    config.train.update(batch_size=64, epochs=5, epoch_steps=30, log_every=10, checkpoint_every=150)
  elif arg == "smoke":
    config.data.update(train="synth_tiny", test="synth_tiny", root="~/.cache/jreid",
                       height=32, width=16, padding=2, num_instances=4)
    config.model.backbone.update(embed_dim=16, depth=2, num_heads=2, patch_size=8, stride=8,
                                 stem_channels=8)
    # Untrained features of a tiny ViT cluster loosely: a wide radius keeps clusters.
    config.cluster.update(k1=10, k2=3, eps=0.5, min_samples=2, max_clusters=64)
    config.optim.update(lr=0.01, milestone_epochs=())
    config.train.update(batch_size=16, epochs=2, epoch_steps=2, log_every=1, checkpoint_every=1)
    config.eval.update(batch_size=32)
  elif arg:
    raise ValueError(f"unknown preset {arg!r} for configs/cluster_contrast.py; use '', 'msmt', "
                     "'synth' or 'smoke'")
  return config
