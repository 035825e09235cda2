"""Images/s of one method's jitted train step on random data (no input pipeline).

    python -m benchmarks.train_step --config=configs/baseline.py:synth --out=benchmarks/results/train_step_synth.json
    python -m benchmarks.train_step --config=configs/baseline.py --batch=32 --steps=3 --num_classes=751

Writes the backend, device count, batch, image size, compile time and the
median step time / images per second over `--steps` timed steps.
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
from jreid import methods
from jreid.train import optim, sharding


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/baseline.py:synth")
  parser.add_argument("--batch", type=int, default=0, help="0 = the config's batch size")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--num_classes", type=int, default=200)
  parser.add_argument("--out", default="")
  args = parser.parse_args()

  config = load_config(args.config)
  batch_size = args.batch or config.train.batch_size
  tx, schedule = optim.build(config.optim, config.train.steps)
  method = methods.build(config, args.num_classes, tx, schedule)
  mesh = sharding.data_mesh()
  repl, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  height, width = config.data.height, config.data.width
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(size=(batch_size, height, width, 3)).astype(np.float32),
           "label": np.repeat(np.arange(batch_size // 4), 4).astype(np.int32) % args.num_classes}
  batch = sharding.global_batch(batch, mesh)
  state = jax.jit(method.init, out_shardings=repl)(jax.random.key(0), jnp.zeros((1, height, width, 3)))
  step = jax.jit(method.train_step, in_shardings=(repl, batched, repl), out_shardings=(repl, repl),
                 donate_argnums=0)
  key = jax.random.key(1)
  start = time.perf_counter()
  state, out = step(state, batch, key)
  jax.block_until_ready(out)
  compile_and_first = time.perf_counter() - start
  times = []
  for _ in range(args.steps):
    start = time.perf_counter()
    state, out = step(state, batch, key)
    jax.block_until_ready(out)
    times.append(time.perf_counter() - start)
  median = float(np.median(times))
  result = {"benchmark": "train_step", "config": args.config, "method": config.method,
            "backbone": config.model.backbone, "width": config.model.width,
            "image": [height, width], "batch": batch_size, "steps_timed": args.steps,
            "first_step_s": compile_and_first, "median_step_s": median,
            "images_per_s": batch_size / median, "backend": jax.default_backend(),
            "devices": jax.device_count(), "device_kind": jax.devices()[0].device_kind,
            "cpu_count": os.cpu_count(), "machine": platform.machine()}
  print(json.dumps(result, indent=2))
  write_result(args.out, result)


if __name__ == "__main__":
  main()
