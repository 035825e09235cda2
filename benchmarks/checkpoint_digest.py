"""What the checkpoint digest costs: saving, verifying and restoring a ResNet-50 BoT train state.

    python -m benchmarks.checkpoint_digest --out=benchmarks/results/checkpoint_digest.json

The state is the one `configs/baseline.py` trains (ResNet-50, BNNeck, a
751-identity classifier as on Market-1501, Adam moments): params, batch_stats
and opt_state, float32, with the tree the method's own `init` builds. Its
float arrays are then refilled with random normal values, as incompressible as
trained weights (a fresh state's zero Adam moments would zstd-compress to
almost nothing and flatter both the write and the hash); `--init` keeps the
initial values. Each of `--repeats`
rounds saves one step with `Checkpointer.save` (orbax's write, then the
digest), times orbax's write alone (the save before digests) on another step,
then `write_digest` and `step_problem` (the check every restore runs) on the
saved step, and a full `Checkpointer.restore`. Medians are reported. The
files were just written, so verification reads them from the page cache: it
measures hashing, not the disk. `--host` saves a `jax.device_get` snapshot
instead of the jax arrays.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import load_config, write_result
from jreid import compile_cache, methods
from jreid.core import checkpoint, run_once, sharding
from jreid.train import update


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def build_state(config, num_classes: int, trained_like: bool):
  method = methods.build(config, num_classes, update.factory(config, config.train.steps))
  repl = sharding.replicated(sharding.data_mesh())
  sample = jnp.zeros((1, config.data.height, config.data.width, 3), jnp.float32)
  state = run_once.jit(method.init, out_shardings=repl)(jax.random.key(0), sample)
  if trained_like:
    rng = np.random.default_rng(0)
    state = jax.tree.map(lambda x: jax.device_put(rng.standard_normal(x.shape, np.float32), repl)
                         if x.dtype == jnp.float32 else x, state)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), state)
  return jax.block_until_ready(state), abstract


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/baseline.py")
  parser.add_argument("--num_classes", type=int, default=751)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--init", action="store_true", help="keep init's values (zero Adam moments)")
  parser.add_argument("--host", action="store_true", help="save a host numpy snapshot of the state")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  compile_cache.disable()

  config = load_config(args.config)
  state, abstract = build_state(config, args.num_classes, trained_like=not args.init)
  to_save = jax.device_get(state) if args.host else state
  count = lambda tree: int(sum(np.size(leaf) for leaf in jax.tree.leaves(tree)))
  rows = []
  with tempfile.TemporaryDirectory(prefix="jreid_digest_bench_") as scratch:
    ckpt = checkpoint.Checkpointer(scratch, keep=2 * args.repeats + 2)
    for repeat in range(args.repeats):
      with_digest, without = 2 * repeat + 1, 2 * repeat + 2
      row = {"save_s": _timed(lambda: ckpt.save(with_digest, to_save, {"iterator": {"next_index": 1}}))}
      orbax_args = checkpoint.ocp.args.Composite(
          state=checkpoint.ocp.args.StandardSave(to_save),
          data=checkpoint.ocp.args.JsonSave({"iterator": {"next_index": 1}}))
      row["save_without_digest_s"] = _timed(lambda: (ckpt.manager.save(without, args=orbax_args),
                                                     ckpt.manager.wait_until_finished()))
      folder = ckpt.step_folder(with_digest)
      row["digest_write_s"] = _timed(lambda: checkpoint.write_digest(folder))
      verified = []
      row["verify_s"] = _timed(lambda: verified.append(checkpoint.step_problem(folder)))
      assert verified == [(None, True)], verified
      row["restore_s"] = _timed(lambda: jax.block_until_ready(ckpt.restore(with_digest, abstract)[0]))
      rows.append(row)
      print(json.dumps(row), flush=True)
    files = [p for p in folder.rglob("*") if p.is_file()]
    step_bytes = sum(p.stat().st_size for p in files)
    ckpt.close()

  median = {key: float(np.median([row[key] for row in rows])) for key in rows[0]}
  result = {"benchmark": "checkpoint_digest", "config": args.config, "method": config.method,
            "backbone": config.model.backbone.name, "num_classes": args.num_classes,
            "saved": "host numpy snapshot" if args.host else "jax arrays",
            "values": "init" if args.init else "random normal float32 (incompressible, as trained)",
            "params": count(state.params), "batch_stats": count(state.batch_stats),
            "opt_state": count(state.opt_state), "state_bytes": int(sum(
                np.asarray(leaf).nbytes for leaf in jax.tree.leaves(state))),
            "step_bytes": step_bytes, "step_files": len(files), "repeats": args.repeats,
            "median": median,
            "digest_overhead_of_save": median["save_s"] / median["save_without_digest_s"] - 1,
            "hash_mb_per_s": step_bytes / 1e6 / median["verify_s"],
            "rows": rows, "backend": jax.default_backend(), "cpu_count": os.cpu_count(),
            "machine": platform.machine(), "jax": jax.__version__,
            "orbax": checkpoint.ocp.__version__ if hasattr(checkpoint.ocp, "__version__") else None}
  print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
  write_result(args.out, result)


if __name__ == "__main__":
  main()
