"""DCAC's training step per diffusion variant: time, peak memory and trainable parameters (Tab. 6).

    python -m benchmarks.dcac_step --scale=tiny --out=benchmarks/results/dcac_step_cpu.json
    python -m benchmarks.dcac_step --scale=sd15 --params_only \
        --out=benchmarks/results/dcac_params_sd15.json          # Tab. 6's parameter counts, any machine
    python -m benchmarks.dcac_step --scale=sd15 --variants=lora --dtype=bfloat16 --batch=64 \
        --out=benchmarks/results/dcac_step_<device>.json        # a GPU: the paper's setting

`sd15`: CLIP ViT-B/16 at 256x128 and Stable Diffusion v1.5's UNet (random weights of its
architecture: the speed does not depend on the values) on 4x16x16 latents of 128x128 VAE
inputs, 751 identities (Market-1501), batch 64 = 16 x 4. The paper (RTX A6000, PyTorch fp16
autocast, UNet checkpointing): baseline 140.3 ms / 7.58 GB / 85.94M trainable, frozen 464.7 ms /
17.22 GB / 86.51M, LoRA 578.1 ms / 18.15 GB / 89.01M, partial-1 647.1 ms, partial-2 662.1 ms,
full 735.9 ms / 28.24 GB / 946.03M. `tiny`: `configs/dcac.py:smoke`'s models at batch 16,
what this CPU can time. The batch is random (the cached VAE posterior is part of the batch,
so the VAE is not in the step). `--remat` recomputes the UNet blocks in the backward pass.
"""
import argparse
import platform

import jax
import numpy as np

from benchmarks.common import load_config, write_result
from benchmarks.train_step import time_method
from jreid.core import partition
from jreid.models import latent_diffusion

PAPER_PARAMS = {"none": 85.94e6, "frozen": 86.51e6, "lora": 89.01e6, "partial1": 599.37e6,
                "partial2": 696.41e6, "full": 946.03e6}  # Tab. 6, trainable
SCALES = {"sd15": dict(config="configs/dcac.py", preset="sd15", classes=751, batch=64, vae_size=128),
          "tiny": dict(config="configs/dcac.py:smoke", preset="tiny", classes=16, batch=16, vae_size=16)}


def dcac_config(scale: dict, variant: str, dtype: str, batch: int, remat: bool):
  config = load_config(scale["config"])
  config.protocol = "single"
  config.dcac.update(diffusion=variant, weights="random", preset=scale["preset"],
                     vae_size=scale["vae_size"], remat=remat)
  config.train.update(batch_size=batch, compute_dtype=dtype, steps=100, epochs=0.0)
  return config


def random_batch(config, classes: int, batch: int) -> dict:
  rng = np.random.default_rng(0)
  d, vae = config.data, latent_diffusion.vae_config(config.dcac.preset)
  side = config.dcac.vae_size // 2 ** (len(vae["block_out_channels"]) - 1)
  posterior = rng.standard_normal((batch, 2, vae["latent_channels"], side, side), dtype=np.float32)
  labels = np.repeat(rng.choice(classes, batch // 4, replace=False), 4).astype(np.int32)
  return {"image": rng.standard_normal((batch, d.height, d.width, 3), dtype=np.float32),
          "label": labels, "posterior": posterior}


def trainable_params(config, classes: int) -> int:
  from jreid import methods
  from jreid.train import update
  method = methods.build(config, classes, update.factory(config, 100))
  shapes = jax.eval_shape(method.init, jax.random.key(0),
                          np.zeros((1, config.data.height, config.data.width, 3), np.float32))
  frozen = config.optim.frozen
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(partition.exclude(shapes.params, frozen))))


def device_row(scale: str, variant: str, dtype: str, steps: int) -> dict:
  """The device suite's `train_dcac_jreid` part: one variant at the scale's batch."""
  setup = SCALES[scale]
  config = dcac_config(setup, variant, dtype, setup["batch"], False)
  first, median = time_method(config, random_batch(config, setup["classes"], setup["batch"]),
                              (config.data.height, config.data.width, 3), setup["classes"], steps)
  stats = jax.devices()[0].memory_stats() or {}
  return {"scale": scale, "variant": variant, "dtype": dtype, "batch": setup["batch"],
          "first_call_s": first, "step_ms": 1000 * median, "images_per_s": setup["batch"] / median,
          "peak_device_bytes": stats.get("peak_bytes_in_use"), "paper_step_ms": 578.1,
          "trainable_params": trainable_params(config, setup["classes"])}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--scale", choices=sorted(SCALES), default="tiny")
  parser.add_argument("--variants", default="none,frozen,lora,partial1,partial2,full")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  parser.add_argument("--batch", type=int, default=0, help="default: the scale's")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--remat", action="store_true")
  parser.add_argument("--params_only", action="store_true",
                      help="count trainable parameters only (free at any scale: no step is run)")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  scale = SCALES[args.scale]
  batch = args.batch or scale["batch"]
  rows = {}
  for variant in args.variants.split(","):
    config = dcac_config(scale, variant, args.dtype, batch, args.remat)
    if args.params_only:
      rows[variant] = {"trainable_params": trainable_params(config, scale["classes"]),
                       "paper_trainable_params": PAPER_PARAMS.get(variant) if args.scale == "sd15" else None}
      print(f"{variant:9s} {rows[variant]['trainable_params'] / 1e6:8.2f}M trainable", flush=True)
      continue
    first, median = time_method(config, random_batch(config, scale["classes"], batch),
                                (config.data.height, config.data.width, 3), scale["classes"], args.steps)
    stats = jax.devices()[0].memory_stats() or {}
    rows[variant] = {"step_ms": 1000 * median, "first_call_s": first, "images_per_s": batch / median,
                     "peak_bytes_in_use": stats.get("peak_bytes_in_use"),  # the process's peak so far
                     "trainable_params": trainable_params(config, scale["classes"])}
    print(f"{variant:9s} {1000 * median:9.1f} ms/step  {batch / median:8.1f} img/s  "
          f"{rows[variant]['trainable_params'] / 1e6:8.2f}M trainable  first call {first:.1f} s",
          flush=True)
  write_result(args.out, {"benchmark": "dcac_step", "scale": args.scale, "dtype": args.dtype,
                          "batch": batch, "remat": args.remat, "steps_timed": args.steps,
                          "device": jax.devices()[0].device_kind, "platform": platform.machine(),
                          "rows": rows})


if __name__ == "__main__":
  main()
