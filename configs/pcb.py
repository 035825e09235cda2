"""PCB (Sun et al. 2018, "Beyond Part Models"), the uniform-partition baseline without the
refined part pooling: ResNet-50 with last stride 1, the map cut into 6
horizontal stripes, each average-pooled, reduced to 256-d (1x1 conv, BN,
ReLU) and classified on its own; CE averaged over the stripes, no triplet
(`jreid.models.pcb`). The paper trains with SGD (lr 0.1 for new layers,
0.01 for the pretrained trunk, via `optim.groups`), batch 64, 60 epochs,
lr x0.1 after 40, 384x128; the test feature is the 6 x 256 concatenation.
Paper (Market, PCB without RPP): mAP 77.4, rank-1 92.3.

Presets (`--config=configs/pcb.py:<arg>`):

* default: real Market-1501 under `--config.data.root`:
      python -m jreid.main --config=configs/pcb.py --workdir=runs/pcb_market \
          --config.data.root=/data
* `synth`: CPU scale on SynthPerson `small` (ResNet-50 width 8, 192x64 so
  the 6 stripes keep 2 rows each, 900 steps, the same lr fractions):
      python -m jreid.main --config=configs/pcb.py:synth --workdir=runs/pcb_synth
* `smoke`: seconds-long run on SynthPerson `tiny` for tests.
"""
from jreid import config_blocks
from jreid.models.reid import model_config


def get_config(arg: str = ""):
  config = config_blocks.run(method="supervised")
  config.model = model_config("pcb", "resnet50")
  config.model.backbone.update(last_stride=1)
  config.model.update(num_parts=6, part_dim=256, test_feature="neck")
  config.loss = config_blocks.loss(label_smoothing=0.0, triplet_weight=0.0)
  config.optim = config_blocks.optim(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                                     milestone_epochs=(40,), groups=((r"backbone/.*", 0.1, 1.0),))
  config.train = config_blocks.train(batch_size=64, epochs=60, log_every=100, checkpoint_every=2000)
  config.eval = config_blocks.evaluation()
  config.data = config_blocks.data(train="market1501", test="market1501", root="~/datasets",
                                   height=384, width=128)
  config.data.update(padding=0, erase_p=0.0)  # PCB: flip only

  if arg == "synth":
    config.data.update(train="synth_small", test="synth_small", root="~/.cache/jreid",
                       height=192, width=64)
    config.model.backbone.update(width=8)
    config.train.update(steps=900, epochs=0.0, log_every=50, checkpoint_every=300)
    config.optim.update(milestones=(600,), milestone_epochs=())
    config.eval.update(before_training=True)
  elif arg == "smoke":
    config.data.update(train="synth_tiny", test="synth_tiny", root="~/.cache/jreid",
                       height=96, width=32)
    config.model.backbone.update(name="resnet18", width=8)
    config.train.update(batch_size=16, steps=4, epochs=0.0, log_every=1, checkpoint_every=2)
    config.optim.update(milestones=(3,), milestone_epochs=())
    config.eval.update(batch_size=32)
  elif arg:
    raise ValueError(f"unknown preset {arg!r} for configs/pcb.py; use '', 'synth' or 'smoke'")
  return config
