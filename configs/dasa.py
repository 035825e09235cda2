"""DASA (lifelong ReID): frozen person-pretrained convs, per-domain BN + SA banks, camera routing.

The lifelong protocol (`jreid.protocols.lifelong`) trains the domains of
`lifelong.domains` in order, one run of the shared loop each, evaluates
every seen domain after each step with test images routed to their camera's
bank, then the unseen domains; it prints the paper-style table and storage,
and writes `results.json` and `seen_average.png`.

Presets (`--config=configs/dasa.py:<arg>`):

* default: Order 1 on real data (Market-1501 -> DukeMTMC-reID -> CUHK-SYSU ->
  MSMT17; unseen CUHK01, CUHK02, CUHK03, GRID, SenseReID, PRID) under
  `--config.data.root`, with the paper's hyper-parameters (METHODS.md):
  ResNet-50, last stride 1, SA 5x5 after all 53 convs, GeM p=3, BNNeck,
  label-smoothed CE; Adam 3.5e-4, wd 5e-4, 80 epochs a domain, warmup 10
  epochs from 0.01, x0.1 at epoch 30 (first domain) / 10 (later), batch 128
  = 64 ids x 2, 256x128. The frozen trunk must be person-pretrained: pass
  LUPerson-NL (or LUPerson / ImageNet) ResNet-50 weights as a PyTorch file.
  Expected (paper Tab. 1, LUPerson-NL): seen average mAP 76.7, R-1 87.6.
      python -m jreid.main --config=configs/dasa.py --workdir=runs/dasa_order1 \\
          --config.data.root=/data --config.init_from=/weights/lupws_r50.pth
* `order2`: VIPeR -> Market-1501 -> CUHK-SYSU -> MSMT17, the rest as default.
  Expected: the DASA row of the paper's Tab. 2 (LUPerson-NL weights).
      python -m jreid.main --config=configs/dasa.py:order2 --workdir=runs/dasa_order2 \\
          --config.data.root=/data --config.init_from=/weights/lupws_r50.pth
* `synth`: the CPU quickstart: SynthPerson `lreid`'s 4 seen domains in order and
  its 2 unseen ones, a ResNet-18 (width 32) at 128x64 whose trunk comes from
  `configs/pretrain_synth.py` (trained once on SynthPerson's pool and cached
  under ~/.cache/jreid/pretrained/ on first use, ~10 min), SA in layer2-4 (the
  deep positions of the paper's Tab. 7, cheaper on CPU than all 20), 12 epochs
  a domain at Adam 3.5e-3.
      python -m jreid.main --config=configs/dasa.py:synth --workdir=runs/dasa_synth
  Measured figures: README ("Quickstart") and benchmarks/results/lifelong_synth.json.
* `smoke`: two tiny domains for seconds-long tests.

Baselines in the same engine: `--config.lifelong.strategy=da|sa|finetune|lwf|joint`
with `--config.model.backbone.sa_kernel=0` for those without SA modules (da, finetune,
lwf, joint); `benchmarks/lifelong.py` runs them all.
"""
from jreid import config_blocks
from jreid.methods.dasa import lifelong_config
from jreid.models.reid import model_config

ORDERS = {
    "order1": "market1501,dukemtmc,cuhksysu,msmt17",
    "order2": "viper,market1501,cuhksysu,msmt17",
}
UNSEEN = "cuhk01,cuhk02,cuhk03_labeled,grid,sensereid,prid"


def get_config(arg: str = ""):
  config = config_blocks.run(method="dasa", protocol="lifelong")
  config.model = model_config("reid", "resnet50")
  config.model.backbone.update(sa_kernel=5)
  config.model.update(pooling="gem", gem_p=3.0, gem_learnable=False)
  config.loss = config_blocks.loss(triplet_weight=0.0)  # label-smoothed CE on the BNNeck logits
  config.optim = config_blocks.optim(warmup_factor=0.01)  # steps and milestones: per domain
  config.train = config_blocks.train(batch_size=128, log_every=50, checkpoint_every=2000)
  config.eval = config_blocks.evaluation()
  config.data = config_blocks.data(train="", test="", root="~/datasets", height=256, width=128)
  config.data.update(num_instances=2)
  config.lifelong = lifelong_config(domains=ORDERS["order1"], unseen=UNSEEN)

  if arg == "order2":
    config.lifelong.domains = ORDERS["order2"]
  elif arg == "synth":
    config.init_from = "recipe:configs/pretrain_synth.py"
    config.data.update(root="~/.cache/jreid", height=128, width=64, padding=5)
    config.model.backbone.update(name="resnet18", width=32, sa_stages=(2, 3, 4))
    # 12 epochs instead of 80: BN and SA alone need a 10x learning rate to fit that
    # fast (d0 alone: mAP 47.7 at 3.5e-4, 60.7 at 3.5e-3, 60.3 at 1e-2; SA in
    # layers 2-4 rather than 3-4: 66.8). The full-network baselines keep 3.5e-4.
    config.optim.update(lr=3.5e-3)
    config.train.update(batch_size=64, log_every=50, checkpoint_every=100)
    config.lifelong.update(domains="synth_lreid/d0,synth_lreid/d1,synth_lreid/d2,synth_lreid/d3",
                           unseen="synth_lreid/u0,synth_lreid/u1", epochs=12, warmup_epochs=2,
                           first_milestone_epochs=8, later_milestone_epochs=6)
  elif arg == "smoke":
    config.init_from = "recipe:configs/pretrain_synth.py:smoke"
    config.data.update(root="~/.cache/jreid", height=32, width=16, padding=2)
    # SA in layer4 only (the notebook's too): SA in all five stages doubles the tests' compile time.
    config.model.backbone.update(name="resnet18", width=8, sa_stages=(4,))
    config.train.update(batch_size=8, log_every=1, checkpoint_every=2)  # 4 of a domain's 6 ids
    config.eval.update(batch_size=32)
    config.lifelong.update(domains="synth_tiny_multi/d0,synth_tiny_multi/d1",
                           unseen="synth_tiny_multi/u0", epochs=0.5, warmup_epochs=0.25,
                           first_milestone_epochs=0.5, later_milestone_epochs=0.5)
  elif arg:
    raise ValueError(f"unknown preset {arg!r} for configs/dasa.py; use '', 'order2', 'synth' or 'smoke'")
  return config
