"""A training state's init: compile time at XLA's default options vs `run_once.jit`, and equal bits.

    JREID_COMPILE_CACHE=off python -m benchmarks.init_compile --out=benchmarks/results/init_compile_cpu.json

For each smoke preset, its method's `init` is lowered once and compiled twice
(the default options, then `jreid.core.run_once.compiler_options()`); both
executables run from the same key and every leaf is compared byte for byte.
Run with the compilation cache off (`JREID_COMPILE_CACHE=off`), or the second
compile of an earlier run's program is a cache read.
"""
from __future__ import annotations

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import load_config, write_result
from jreid import compile_cache, methods
from jreid.core import run_once
from jreid.train import update

PRESETS = ("baseline", "sbs", "mgn", "pcb", "distill", "dasa", "upreid", "vit", "transreid_ssl",
           "cluster_contrast", "dcac", "ldm_synth", "pretrain_synth")


def measure(spec: str) -> dict:
  config = load_config(spec)
  if config.method == "distill":
    config.teacher.checkpoint = "/not/read/by/init"
  method = methods.build(config, 7, update.factory(config, 10))
  sample = jnp.zeros((1, config.data.height, config.data.width, 3))
  lowered = jax.jit(method.init).lower(jax.random.key(0), sample)
  row, states = {}, {}
  for name, options in (("default", {}), ("run_once", run_once.compiler_options())):
    start = time.perf_counter()
    executable = lowered.compile(compiler_options=options)
    row[f"{name}_compile_s"] = time.perf_counter() - start
    states[name] = jax.tree.leaves(jax.device_get(executable(jax.random.key(0), sample)))
  row["identical"] = all(np.asarray(a).tobytes() == np.asarray(b).tobytes()
                         for a, b in zip(states["default"], states["run_once"]))
  row["speedup"] = row["default_compile_s"] / row["run_once_compile_s"]
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--presets", default=",".join(PRESETS), help="config files' names, each :smoke")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  if compile_cache.folder() is not None:
    parser.error("run with JREID_COMPILE_CACHE=off: a cached program compiles in no time")
  rows = {}
  for name in args.presets.split(","):
    rows[name] = measure(f"configs/{name}.py:smoke")
    r = rows[name]
    print(f"{name:18s} default {r['default_compile_s']:5.1f} s  run_once {r['run_once_compile_s']:5.1f} s"
          f"  identical={r['identical']}", flush=True)
  write_result(args.out, {"benchmark": "init_compile", "backend": jax.default_backend(),
                          "options": run_once.compiler_options(), "cpu": platform.processor(),
                          "jax": jax.__version__, "presets": rows})


if __name__ == "__main__":
  main()
