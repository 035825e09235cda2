"""Speed and peak memory of k-reciprocal re-ranking at Market-1501 scale.

    python -m benchmarks.rerank_speed [--metric euclidean|cosine]
        [--out benchmarks/results/rerank_speed.json]

Random (seeded) 2048-d features for 3368 queries and 15913 gallery images;
the three distance blocks come from compute_distance. Each metric runs in a
fresh subprocess so that its peak RSS (``resource.getrusage``, the kernel's
high-water mark) is its own. Reported per run: the time of each re-ranking
phase and in total, the peak RSS of the whole process, the RSS just before
re-ranking (features, the three blocks: ~1.3 GiB, and the JAX runtime) and
the peak minus that, i.e. what re-ranking itself added at its worst; then
the same call again, warm (its neighbour search compiled; the persistent
compilation cache is per folder, `jreid.compile_cache`). The published numpy
code took 76-90 s and 8.45 GiB here (PERF_NOTES.md).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import REPO, write_result

GIB = 1 << 30


def rss_now() -> int | None:
  """Current resident set size in bytes (Linux /proc), None elsewhere."""
  try:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
  except OSError:
    return None


def peak_rss() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def worker(args) -> dict:
  import jax
  from jreid.evaluation import compute_distance, re_ranking

  rng = np.random.default_rng(args.seed)
  qf = rng.standard_normal((args.num_query, args.dim), dtype=np.float32)
  gf = rng.standard_normal((args.num_gallery, args.dim), dtype=np.float32)
  start = time.perf_counter()
  q_g = compute_distance(qf, gf, args.metric)
  q_q = compute_distance(qf, qf, args.metric)
  g_g = compute_distance(gf, gf, args.metric)
  distance_s = time.perf_counter() - start
  del qf, gf
  before = rss_now()
  timings = {}
  start = time.perf_counter()
  final = re_ranking(q_g, q_q, g_g, k1=args.k1, k2=args.k2, lambda_value=args.lambda_value,
                     timings=timings)
  total = time.perf_counter() - start
  peak = peak_rss()
  warm_timings = {}  # the same call again: the neighbour search is compiled by now
  start = time.perf_counter()
  re_ranking(q_g, q_q, g_g, k1=args.k1, k2=args.k2, lambda_value=args.lambda_value,
             timings=warm_timings)
  warm = time.perf_counter() - start
  return {
      "metric": args.metric, "k1": args.k1, "k2": args.k2, "lambda": args.lambda_value,
      "shapes": {"query": args.num_query, "gallery": args.num_gallery, "dim": args.dim},
      "distance_blocks_s": distance_s,
      "rerank_total_s": total,  # the first call, compilation included
      "rerank_phases_s": timings,
      "rerank_warm_s": warm,
      "rerank_warm_phases_s": warm_timings,
      "peak_rss_gib": peak / GIB,
      "rss_before_rerank_gib": before / GIB if before is not None else None,
      "rerank_added_peak_gib": (peak - before) / GIB if before is not None else None,
      "final_finite": bool(np.isfinite(final).all()),
      "jax_backend": jax.default_backend(),
      "cpu_count": os.cpu_count(),
      "compile_cache": "off",
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="benchmarks/results/rerank_speed.json")
  parser.add_argument("--metric", choices=("euclidean", "cosine", "both"), default="both")
  parser.add_argument("--num-query", type=int, default=3368)
  parser.add_argument("--num-gallery", type=int, default=15913)
  parser.add_argument("--dim", type=int, default=2048)
  parser.add_argument("--k1", type=int, default=20)
  parser.add_argument("--k2", type=int, default=6)
  parser.add_argument("--lambda-value", type=float, default=0.3)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.worker:
    print(json.dumps(worker(args)))
    return
  runs = []
  for metric in (("euclidean", "cosine") if args.metric == "both" else (args.metric,)):
    cmd = [sys.executable, "-m", "benchmarks.rerank_speed", "--worker", "--metric", metric,
           "--num-query", str(args.num_query), "--num-gallery", str(args.num_gallery),
           "--dim", str(args.dim), "--k1", str(args.k1), "--k2", str(args.k2),
           "--lambda-value", str(args.lambda_value), "--seed", str(args.seed)]
    env = {**os.environ, "JREID_COMPILE_CACHE": "off"}  # the first call compiles for real
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO, env=env).stdout
    run = json.loads(out.strip().splitlines()[-1])
    phases = ", ".join(f"{k} {v:.2f} s" for k, v in run["rerank_phases_s"].items())
    print(f"{metric}: re_ranking {run['rerank_total_s']:.2f} s first call ({phases}), "
          f"{run['rerank_warm_s']:.2f} s warm; peak RSS "
          f"{run['peak_rss_gib']:.2f} GiB ({run['rss_before_rerank_gib']:.2f} GiB before, "
          f"+{run['rerank_added_peak_gib']:.2f} GiB)")
    runs.append(run)
  write_result(args.out, {"runs": runs})


if __name__ == "__main__":
  main()
