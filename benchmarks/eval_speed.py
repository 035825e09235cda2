"""Speed of Market-1501-scale evaluation: distance matrix, then ranking metrics.

    python -m benchmarks.eval_speed [--out benchmarks/results/eval_speed.json]

Features are random (seeded), so the metrics are chance level; only the
timings matter. Shapes follow Market-1501: 3368 queries from 750 ids, 15913
gallery images from those ids plus pid-0 distractors, 6 cameras, 2048-d
features (ResNet-50). compute_distance is timed cold (its first call includes
the XLA compilation: the persistent compilation cache is off here) and warm;
the difference is reported as compile time.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

import jax
import numpy as np

from jreid import compile_cache
from jreid.evaluation import compute_distance, evaluate_rank


def timed(fn, *args, **kwargs):
  start = time.perf_counter()
  result = fn(*args, **kwargs)
  return result, time.perf_counter() - start


def machine_info() -> dict:
  return {
      "jax_backend": jax.default_backend(),
      "jax_devices": [str(d) for d in jax.devices()],
      "cpu_count": os.cpu_count(),
      "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
      "platform": platform.platform(),
      "python": platform.python_version(),
      "jax_version": jax.__version__,
      "numpy_version": np.__version__,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="benchmarks/results/eval_speed.json")
  parser.add_argument("--num-query", type=int, default=3368)
  parser.add_argument("--num-gallery", type=int, default=15913)
  parser.add_argument("--dim", type=int, default=2048)
  parser.add_argument("--num-ids", type=int, default=750)
  parser.add_argument("--num-cams", type=int, default=6)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--chunk-size", type=int, default=1024, help="compute_distance query chunk")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  compile_cache.disable()  # the first call's time is a real compilation, not a read of an earlier run's

  rng = np.random.default_rng(args.seed)
  qf = rng.standard_normal((args.num_query, args.dim), dtype=np.float32)
  gf = rng.standard_normal((args.num_gallery, args.dim), dtype=np.float32)
  q_pids = rng.integers(1, args.num_ids + 1, args.num_query)
  g_pids = rng.integers(0, args.num_ids + 1, args.num_gallery)  # 0: distractors
  q_camids = rng.integers(0, args.num_cams, args.num_query)
  g_camids = rng.integers(0, args.num_cams, args.num_gallery)

  distmat, dist_cold = timed(compute_distance, qf, gf, "cosine", args.chunk_size)
  dist_warm = [timed(compute_distance, qf, gf, "cosine", args.chunk_size)[1]
               for _ in range(args.repeats)]
  rank_times = []
  for _ in range(args.repeats):
    metrics, seconds = timed(evaluate_rank, distmat, q_pids, g_pids, q_camids, g_camids)
    rank_times.append(seconds)

  result = {
      "shapes": {"query": list(qf.shape), "gallery": list(gf.shape),
                 "distmat": list(distmat.shape), "num_ids": args.num_ids,
                 "num_cams": args.num_cams},
      "compute_distance": {
          "metric": "cosine", "chunk_size": args.chunk_size,
          "first_call_s": dist_cold, "compile_s": max(dist_cold - min(dist_warm), 0.0),
          "warm_s": dist_warm, "warm_min_s": min(dist_warm),
          "warm_median_s": statistics.median(dist_warm)},
      "evaluate_rank": {
          "max_rank": 50, "times_s": rank_times, "min_s": min(rank_times),
          "median_s": statistics.median(rank_times),
          "num_valid": metrics["num_valid"], "mAP": metrics["mAP"],
          "rank1": float(metrics["cmc"][0])},
      "machine": machine_info(),
      "compile_cache": "off",
  }
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2) + "\n")
  print(f"compute_distance cosine {qf.shape} x {gf.shape}: first call {dist_cold:.2f} s "
        f"(compile ~{result['compute_distance']['compile_s']:.2f} s), "
        f"warm median {statistics.median(dist_warm):.2f} s")
  print(f"evaluate_rank {distmat.shape}: median {statistics.median(rank_times):.2f} s "
        f"(min {min(rank_times):.2f} s), {metrics['num_valid']} valid queries")
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
