"""Images/s of a method's jitted train step on random data (no input pipeline), per conv implementation,
side by side with the same BoT model in PyTorch eager.

    python -m benchmarks.train_step --config=configs/baseline.py --batch=32 --steps=5 \
        --num_classes=751 --impls=xla,dot_1x1,dot --torch \
        --out=benchmarks/results/train_step_r50_bot_cpu.json
    python -m benchmarks.train_step --config=configs/baseline.py:synth --impls=xla,dot_1x1,dot \
        --torch --out=benchmarks/results/train_step_synth_cpu.json

For each `--impls` entry (`model.conv_impl`: xla | dot_1x1 | dot | auto) the JSON holds
the compile + first step time (the persistent compilation cache is off here)
and the median step time / images per second
over `--steps` timed steps. `--torch` adds `benchmarks/torch_resnet.py`'s
model (same depth, width, last stride 1, BNNeck, CE + triplet, Adam) trained
in PyTorch eager with one thread per core, and the ratio of each jreid
implementation's images/s to PyTorch's; with `xla` among `--impls`, each
one's speed-up over it (`jreid_over_xla`).

A ViT backbone (`vit_*`, `clip_vit_*`) has no conv_impl: jreid is timed once
under the key "default", and `--torch` times `benchmarks/torch_vit.py`'s
TransReID(ViT) (or the CLIP tower) at the config's image size with the
same objective and the config's optimiser (SGD with momentum, AdamW or Adam):

    python -m benchmarks.train_step --config=configs/vit.py --batch=8 --steps=5 --torch \
        --out=benchmarks/results/train_step_vit_s16_cpu.json
"""
import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import load_config, write_result
from jreid import compile_cache, methods
from jreid.core import run_once, sharding
from jreid.train import update


def _median_step(step, state, steps):
  """(compile + first step seconds, median seconds of `steps` further steps)."""
  start = time.perf_counter()
  state = step(state)
  first = time.perf_counter() - start
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state = step(state)
    times.append(time.perf_counter() - start)
  return first, float(np.median(times))


def time_jreid(config, images, labels, num_classes, steps):
  return time_method(config, {"image": images, "label": labels}, images.shape[1:], num_classes, steps)


def time_method(config, batch, image_shape, num_classes, steps):
  """`time_jreid` for any method's batch (DINO's multi-crop dict); `image_shape` (H, W, C) inits."""
  method = methods.build(config, num_classes, update.factory(config, config.train.steps))
  mesh = sharding.data_mesh()
  repl, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  batch = sharding.global_batch(batch, mesh)
  state = run_once.jit(method.init, out_shardings=repl)(jax.random.key(0),
                                                       jnp.zeros((1, *image_shape)))
  state = (method.load_weights or (lambda s: s))(state)
  # A method's frozen constants (DCAC's UNet) are an argument of the step, as in the loop.
  constants = (jax.device_put(method.load_constants(), repl),) if method.has_constants else ()
  train_step = jax.jit(method.train_step, in_shardings=(repl, batched, repl, *[repl] * len(constants)),
                       out_shardings=(repl, repl), donate_argnums=0)
  key = jax.random.key(1)

  def step(state):
    state, out = train_step(state, batch, key, *constants)
    jax.block_until_ready(out)
    return state

  return _median_step(step, state, steps)


# jreid's ViT backbone names: vit_small(_ics), vit_base(_ics), clip_vit_b16.
VIT_PREFIXES = ("vit_", "clip_vit")


def is_vit(name):
  return name.startswith(VIT_PREFIXES)


def _torch_resnet_twin(config, num_classes):
  """benchmarks/torch_resnet's BoT model and Adam, as this benchmark has always timed ResNets."""
  import torch

  from benchmarks import torch_resnet
  model_cfg, backbone = config.model, config.model.backbone
  if (backbone.name not in torch_resnet.STAGES or backbone.ibn or backbone.non_local
      or model_cfg.meta != "reid" or model_cfg.head != "bnneck" or backbone.last_stride != 1):
    raise SystemExit(f"--torch times a plain ResNet-18/50 BoT with last stride 1 or a ViT; "
                     f"{backbone.name} with this model config has no torch twin here")
  model = torch_resnet.Baseline(backbone.name, width=backbone.width, num_classes=num_classes)
  opt = lambda params: torch.optim.Adam(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
  return model, (lambda out: (out[1], out[2])), opt


def _torch_vit_twin(config, num_classes, image_size):
  """benchmarks/torch_vit's TransReID(ViT) (ICS stem for `*_ics`, the CLIP tower for `clip_*`) and the
  config's optimiser: SGD with momentum, AdamW or Adam (coupled L2 but AdamW's, as jreid.train.optim)."""
  import torch

  from benchmarks import torch_vit
  backbone, optim = config.model.backbone, config.optim
  if backbone.name.startswith("clip_"):
    base = torch_vit.CLIPVisual(image_size, backbone.patch_size, backbone.embed_dim, backbone.depth,
                                backbone.num_heads, backbone.proj_dim, backbone.mlp_ratio)
  else:
    base = torch_vit.VisionTransformer(
        image_size, backbone.patch_size, backbone.stride, embed_dim=backbone.embed_dim,
        depth=backbone.depth, num_heads=backbone.num_heads, mlp_ratio=backbone.mlp_ratio,
        drop_rate=backbone.dropout, drop_path_rate=backbone.drop_path,
        stem_conv=backbone.name.endswith("_ics"))
  model = torch_vit.TransReID(base, num_classes)

  def opt(params):
    params = [p for p in params if p.requires_grad]  # the BNNeck's frozen bias
    if optim.name == "sgd":
      return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum, nesterov=optim.nesterov,
                             weight_decay=optim.weight_decay)
    kind = torch.optim.AdamW if optim.name == "adamw" else torch.optim.Adam
    return kind(params, lr=optim.lr, betas=(optim.beta1, optim.beta2), eps=optim.eps,
                weight_decay=optim.weight_decay)

  return model, (lambda out: (out[0], out[2])), opt


def time_torch(config, images, labels, num_classes, steps, *, device="cpu",
               dtype="float32", compile=None):
  """The same train step in PyTorch: BoT objective (label-smoothed CE + batch-hard triplet) on the
  config's model, a plain ResNet-18/50 BoT or a ViT (`is_vit`) ReID model.

  `device` is a torch device ("cpu", "cuda"); `dtype="bfloat16"` runs the
  network under autocast with the loss in float32, as jreid's
  `train.compute_dtype` does; `compile` names a `torch.compile` backend
  ("inductor", or "eager" for dynamo's capture alone) that wraps forward +
  loss (the backward pass is compiled through it too); None runs eagerly.
  Returns ((first step s, median step s), torch version, threads, peak device bytes or None).
  """
  import torch

  from benchmarks import torch_resnet
  device = torch.device(device)
  cuda = device.type == "cuda"
  if cuda:
    torch.backends.cudnn.benchmark = True
    torch.cuda.reset_peak_memory_stats(device)
  else:
    torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  if is_vit(config.model.backbone.name):
    model, pick, make_opt = _torch_vit_twin(config, num_classes, tuple(images.shape[1:3]))
  else:
    model, pick, make_opt = _torch_resnet_twin(config, num_classes)
  model = model.to(device)
  model.train()
  opt = make_opt(model.parameters())
  x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)
  y = torch.from_numpy(labels.astype(np.int64)).to(device)

  def forward_loss(x, y):
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
      pooled, logits = pick(model(x))  # triplet on the pre-BN feature, CE on the logits
    return torch_resnet.bot_loss(pooled.float(), logits.float(), y)

  loss_fn = torch.compile(forward_loss, backend=compile) if compile else forward_loss

  def step(state):
    opt.zero_grad(set_to_none=True)
    loss_fn(x, y).backward()
    opt.step()
    if cuda:
      torch.cuda.synchronize(device)
    return state

  timing = _median_step(step, None, steps)
  peak = torch.cuda.max_memory_allocated(device) if cuda else None
  return timing, torch.__version__, torch.get_num_threads(), peak


def _timing(first, median, batch_size):
  return {"first_step_s": first, "median_step_s": median, "images_per_s": batch_size / median}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/baseline.py:synth")
  parser.add_argument("--batch", type=int, default=0, help="0 = the config's batch size")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--num_classes", type=int, default=200)
  parser.add_argument("--impls", default="auto",
                      help="comma-separated model.conv_impl values (ignored for a ViT backbone)")
  parser.add_argument("--torch", action="store_true", help="also time the PyTorch eager twin")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  compile_cache.disable()  # first_step_s is a real compilation, not a read of an earlier run's

  config = load_config(args.config)
  batch_size = args.batch or config.train.batch_size
  height, width = config.data.height, config.data.width
  rng = np.random.default_rng(0)
  images = rng.normal(size=(batch_size, height, width, 3)).astype(np.float32)
  labels = (np.repeat(np.arange(batch_size // 4), 4) % args.num_classes).astype(np.int32)

  backbone = config.model.backbone
  vit = is_vit(backbone.name)
  shape = ({key: backbone[key] for key in ("embed_dim", "depth", "num_heads", "patch_size", "stride")}
           if vit else {"width": backbone.width})
  result = {"benchmark": "train_step", "config": args.config, "method": config.method,
            "backbone": backbone.name, **shape,
            "image": [height, width], "batch": batch_size, "steps_timed": args.steps,
            "backend": jax.default_backend(), "devices": jax.device_count(),
            "device_kind": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "jax": jax.__version__, "compile_cache": "off",
            "jreid": {}}
  # A ViT has no conv_impl choice: it is timed once, under "default".
  for impl in ["default"] if vit else [i for i in args.impls.split(",") if i]:
    if not vit:
      backbone.conv_impl = impl
    timing = _timing(*time_jreid(config, images, labels, args.num_classes, args.steps), batch_size)
    result["jreid"][impl] = timing
    print(f"jreid conv_impl={impl}: {timing['images_per_s']:.2f} img/s "
          f"({timing['median_step_s']:.3f} s/step)", flush=True)
  if args.torch:
    (first, median), version, threads, _ = time_torch(config, images, labels, args.num_classes,
                                                      args.steps)
    result["torch_eager"] = {**_timing(first, median, batch_size), "torch": version,
                             "threads": threads}
    print(f"torch eager: {result['torch_eager']['images_per_s']:.2f} img/s", flush=True)
    result["jreid_over_torch"] = {impl: t["images_per_s"] / result["torch_eager"]["images_per_s"]
                                  for impl, t in result["jreid"].items()}
  if "xla" in result["jreid"]:
    xla = result["jreid"]["xla"]["images_per_s"]
    result["jreid_over_xla"] = {impl: t["images_per_s"] / xla for impl, t in result["jreid"].items()}
  print(json.dumps(result, indent=2))
  write_result(args.out, result)


if __name__ == "__main__":
  main()
