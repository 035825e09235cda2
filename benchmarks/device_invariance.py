"""Does a run depend on the device count? The same run on 1 and 4 simulated CPU devices.

    python -m benchmarks.device_invariance --config=configs/upreid.py:synth --steps=20 \
        --out=benchmarks/results/device_invariance_upreid_synth.json

Three trajectories of the loop's own step (`loop.prepare`: the same jit shardings,
data order and per-step keys as `jreid.main`), every step recorded:

* `one`: a 1-device mesh; `four`: a 4-device mesh (the global batch split 4 ways,
  so XLA sums batch statistics and gradients in a different order);
* `one_perturbed`: 1 device again, every initial weight moved by one float32 ulp.

`four - one` is what sharding changes; `one_perturbed - one` is how fast this
run amplifies the smallest possible difference. When both grow alike, the
device count changes nothing but float32 rounding, which the run's own
dynamics amplify. The JSON holds |loss difference| per step and the first step
at which each exceeds `--tolerance`.
"""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=4")

import argparse  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

from benchmarks.common import load_config, write_result  # noqa: E402
from jreid.core import sharding  # noqa: E402
from jreid.data import pipeline  # noqa: E402
from jreid.train import loop  # noqa: E402


def trajectory(prepared, config, devices, perturb: bool, steps: int) -> list[float]:
  mesh = Mesh(np.asarray(devices), (sharding.DATA_AXIS,))
  repl, batch_sharding = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  state = jax.device_get(prepared.fresh_state())
  if perturb:
    one_ulp = lambda x: np.nextafter(x, np.inf).astype(x.dtype)
    state = state.replace(params=jax.tree.map(one_ulp, state.params))
  state = jax.device_put(state, repl)
  step_fn = jax.jit(prepared.method.train_step, in_shardings=(repl, batch_sharding, repl),
                    out_shardings=(repl, repl))
  make_dataset = prepared.method.train_dataset or pipeline.train_dataset  # as the loop
  batches = iter(make_dataset(prepared.data.train, options=prepared.options,
                              batch_size=config.train.batch_size,
                              num_instances=config.data.num_instances,
                              num_steps=prepared.config.train.steps, seed=config.seed))
  _, train_rng = jax.random.split(jax.random.key(config.seed))
  losses = []
  for step in range(steps):  # the first steps of the configured run, its lr schedule unchanged
    batch = sharding.global_batch(next(batches), mesh)
    state, measurements = step_fn(state, batch, jax.random.fold_in(train_rng, step))
    losses.append(float(measurements["loss"]))
  return losses


def first_above(diffs: list[float], tolerance: float):
  return next((step for step, d in enumerate(diffs, start=1) if d > tolerance), None)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/upreid.py:synth")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--tolerance", type=float, default=1e-4)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  config = load_config(args.config)
  prepared = loop.prepare(config)
  devices = jax.devices()
  runs = {"one": trajectory(prepared, config, devices[:1], perturb=False, steps=args.steps),
          "four": trajectory(prepared, config, devices[:4], perturb=False, steps=args.steps),
          "one_perturbed": trajectory(prepared, config, devices[:1], perturb=True, steps=args.steps)}
  diff = {name: [abs(a - b) for a, b in zip(runs[name], runs["one"])]
          for name in ("four", "one_perturbed")}
  print(f"{'step':>5}{'loss (1 device)':>18}{'|4 dev - 1 dev|':>18}{'|1 ulp - 1 dev|':>18}")
  for step, loss in enumerate(runs["one"], start=1):
    print(f"{step:>5}{loss:>18.6f}{diff['four'][step - 1]:>18.1e}"
          f"{diff['one_perturbed'][step - 1]:>18.1e}")
  summary = {f"first_step_above_tolerance_{name}": first_above(d, args.tolerance)
             for name, d in diff.items()}
  print(summary)
  write_result(args.out, {"config": args.config, "steps": args.steps,
                          "tolerance": args.tolerance, "loss": runs,
                          "abs_loss_difference": diff, **summary})


if __name__ == "__main__":
  main()
