"""What the persistent compilation cache saves: one run cold, then warm, per write threshold.

    python -m benchmarks.compile_cache --out=benchmarks/results/compile_cache_cpu.json

Each row runs `python -m jreid.main --config=<config>` twice as a user would
(a fresh process each time) into an empty cache folder, with
`jax_persistent_cache_min_compile_time_secs` set to the row's threshold:
the first run compiles and writes, the second reads. It records both wall
times, the number and bytes of cache entries, and whether the two
results.json files are byte-identical. `--off` adds the run without any cache.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from benchmarks.common import REPO, write_result


def timed_run(config: str, workdir: pathlib.Path, cache: str, threshold: float) -> float:
  env = {**os.environ, "JREID_COMPILE_CACHE": cache,
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": str(threshold)}
  start = time.perf_counter()
  subprocess.run([sys.executable, "-m", "jreid.main", f"--config={config}", f"--workdir={workdir}"],
                 cwd=REPO, env=env, check=True, capture_output=True, text=True)
  return time.perf_counter() - start


def entries(folder: pathlib.Path) -> tuple[int, int]:
  files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
  return len(files), sum(p.stat().st_size for p in files)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/baseline.py:smoke")
  parser.add_argument("--thresholds", default="0,0.1,0.5,1.0", help="seconds, comma-separated")
  parser.add_argument("--off", action="store_true", help="also time a run with the cache off")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  rows = []
  with tempfile.TemporaryDirectory(prefix="jreid_cache_bench_") as scratch:
    root = pathlib.Path(scratch)
    timed_run(args.config, root / "data_warmup", "off", 0.0)  # generates the dataset once
    if args.off:
      rows.append({"threshold_s": None, "off_s": timed_run(args.config, root / "off", "off", 0.0)})
      print(f"cache off: {rows[-1]['off_s']:.1f} s", flush=True)
    for threshold in map(float, args.thresholds.split(",")):
      cache = root / f"xla_{threshold}"
      cold = timed_run(args.config, root / f"cold_{threshold}", str(cache), threshold)
      count, size = entries(cache)
      warm = timed_run(args.config, root / f"warm_{threshold}", str(cache), threshold)
      same = ((root / f"cold_{threshold}" / "results.json").read_bytes()
              == (root / f"warm_{threshold}" / "results.json").read_bytes())
      rows.append({"threshold_s": threshold, "cold_s": cold, "warm_s": warm, "entries": count,
                   "bytes": size, "results_identical": same})
      print(f"threshold {threshold:.2f} s: cold {cold:.1f} s, warm {warm:.1f} s, "
            f"{count} entries ({size / 2**20:.1f} MiB), identical results: {same}", flush=True)
  write_result(args.out, {"benchmark": "compile_cache", "config": args.config,
                          "cpu_count": os.cpu_count(), "rows": rows})


if __name__ == "__main__":
  main()
